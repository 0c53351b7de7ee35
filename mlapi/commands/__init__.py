"""Admin CLI command groups, each registered on the app by ``mlapi.cli``."""

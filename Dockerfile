# syntax=docker/dockerfile:1
# Multi-stage: build tools live only in the build stage; the runtime image runs as a non-root user.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# CPU build by default; for CUDA pass e.g. --build-arg TORCH_SPEC="torch==2.13.0 --index-url <cuda index>".
ARG TORCH_SPEC="torch==2.13.0"
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN pip install $TORCH_SPEC
COPY pyproject.toml setup.cfg README.md ./
COPY mlapi ./mlapi
RUN pip install .

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --system --uid 10001 --create-home --home-dir /home/mlapi mlapi \
    && mkdir -p /data && chown mlapi /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY gunicorn.conf.py wsgi.py ./
COPY migrations ./migrations
COPY models ./models
COPY deploy/docker-entrypoint.sh /usr/local/bin/mlapi-entrypoint
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    MLAPI_ENV=production \
    MLAPI_BIND=0.0.0.0:8000 \
    MLAPI_DATABASE_URL=sqlite:////data/mlapi.db \
    MLAPI_MIGRATIONS_DIR=/app/migrations \
    MLAPI_MODEL_DIR=/app/models
USER mlapi
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=3s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
ENTRYPOINT ["mlapi-entrypoint"]

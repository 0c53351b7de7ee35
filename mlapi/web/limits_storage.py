"""Redis storage for flask-limiter's moving window that answers the quota headers from the hit.

``limits`` checks a moving window with one Lua call (acquire) and flask-limiter then asks for the
window's state for the X-RateLimit-* headers with a second one. On a loopback Redis a round trip
costs 0.15-0.5 ms, more than the rest of the limiter; this storage computes the state in the
acquiring script (atomically, so it is the state right after this request's deduction) and hands
it to the one window query of the same request on the same thread. Any other query goes to Redis.

Used through the ``mlapi+redis://`` (``mlapi+rediss://``, ``mlapi+redis+unix://``) schemes.
"""

from __future__ import annotations

import threading
import time

from limits.storage import RedisStorage

PREFIX = "mlapi+"

# limits' acquire_moving_window.lua, then its moving_window.lua's binary search for the oldest
# entry inside the window; returns {acquired, oldest timestamp or false, entries in the window}.
ACQUIRE_AND_REPORT = """
local timestamp = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local expiry = tonumber(ARGV[3])
local amount = tonumber(ARGV[4])
local acquired = 0

if amount <= limit then
    local entry = redis.call('lindex', KEYS[1], limit - amount)
    if not (entry and tonumber(entry) >= timestamp - expiry) then
        local entries = {}
        for i = 1, amount do
            entries[i] = timestamp
        end
        for i = 1, #entries, 5000 do
            redis.call('lpush', KEYS[1], unpack(entries, i, math.min(i + 4999, #entries)))
        end
        redis.call('ltrim', KEYS[1], 0, limit - 1)
        redis.call('expire', KEYS[1], expiry)
        acquired = 1
    end
end

local target = timestamp - expiry
local low, high, index = 0, limit - 1, nil
while low <= high do
    local mid = math.floor((low + high) / 2)
    local value = tonumber(redis.call('lindex', KEYS[1], mid))
    if value and value >= target then
        index = mid
        low = mid + 1
    else
        high = mid - 1
    end
end
if index then
    return {acquired, tostring(redis.call('lindex', KEYS[1], index)), index + 1}
end
return {acquired, false, 0}
"""


class ReportingRedisStorage(RedisStorage):
    STORAGE_SCHEME = [f"{PREFIX}redis", f"{PREFIX}rediss", f"{PREFIX}redis+unix"]

    def __init__(self, uri: str, **options: float | str | bool) -> None:
        super().__init__(uri.removeprefix(PREFIX), **options)
        self._reported = threading.local()

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self.lua_acquire_and_report = self.get_connection().register_script(ACQUIRE_AND_REPORT)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        prefixed = self.prefixed_key(key)
        now = time.time()
        acquired, oldest, count = self.lua_acquire_and_report([prefixed], [now, limit, expiry, amount])
        self._reported.window = (prefixed, limit, expiry, (float(oldest), int(count)) if oldest else (now, 0))
        return bool(acquired)

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        reported = getattr(self._reported, "window", None)
        self._reported.window = None  # one answer per acquisition: later queries see Redis
        if reported is not None and reported[:3] == (self.prefixed_key(key), limit, expiry):
            return reported[3]
        return super().get_moving_window(key, limit, expiry)


def storage_uri(redis_url: str) -> str:
    """The flask-limiter storage URI for a Redis URL (``redis://``, ``rediss://``, ``redis+unix://``)."""
    return PREFIX + redis_url

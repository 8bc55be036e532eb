"""The Lua scripts of the op log and what their replies mean (protocol/spec.md §7.1).

Each starts with the `#!lua` shebang and no flags, so Redis refuses it *before it runs*
when it must not write (`-OOM` over maxmemory, `-NOREPLICAS`, `-READONLY` on a replica):
a refused append never leaves half its entries behind. Every key a script touches is
passed in KEYS, all under one hash tag (keys.py).

APPEND is the fence: it checks the caller's token against the lease *and* that the first
new index is head+1, then XADDs, all inside one script, so a primary that lost its lease
(paused, cut off, replaced) cannot add a single entry however late its call arrives. A
call that is sent again after its outcome was lost may overlap entries it already wrote:
under the same token (`meta.writer`) one index is only ever given one frame, so those are
skipped (all of them: DUP) and only the rest is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from .keys import FORMAT, VERSION, Keys

INIT = f"""#!lua
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'format', '{FORMAT}', 'version', '{VERSION}', 'cluster_id', ARGV[1],
             'head', '0', 'head_epoch', '0', 'head_crc', '', 'writer', '', 'created_ms', ARGV[2],
             'snap_next', '0', 'snap_gen', '0', 'snap_index', '0', 'prev_snap_gen', '0', 'prev_snap_index', '0')
end
return redis.call('HMGET', KEYS[1], 'format', 'version', 'cluster_id')
"""

ACQUIRE = """#!lua
local cluster = redis.call('HGET', KEYS[4], 'cluster_id')
if cluster ~= ARGV[7] then return {'WRONG_CLUSTER', cluster or ''} end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'HELD', redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
end
local m = redis.call('HMGET', KEYS[4], 'head', 'head_epoch', 'head_crc')
if m[1] ~= ARGV[4] or m[2] ~= ARGV[5] or m[3] ~= ARGV[6] then
  return {'BEHIND_OR_DIVERGED', m[1], m[2]}
end
local e = redis.call('INCR', KEYS[2])
if e <= tonumber(m[2]) then
  e = tonumber(m[2]) + 1
  redis.call('SET', KEYS[2], e)
end
local token = e .. ':' .. ARGV[1] .. ':' .. ARGV[2]
redis.call('SET', KEYS[1], token, 'PX', ARGV[3])
redis.call('HSET', KEYS[3], e, tonumber(m[1]) + 1)
return {'OK', e, token}
"""

RENEW = """#!lua
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

RELEASE = """#!lua
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

APPEND = """#!lua
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED lease lost') end
local head = tonumber(redis.call('HGET', KEYS[2], 'head'))
if not head then return redis.error_reply('NOLOG the op log meta is missing') end
local first = tonumber(ARGV[2])
local n = #ARGV - 3
local skip = 0
if first <= head and redis.call('HGET', KEYS[2], 'writer') == ARGV[1] then
  skip = math.min(head - first + 1, n)
  if skip == n then return {'DUP', head} end
end
if first + skip ~= head + 1 then return redis.error_reply(string.format('GAP %d', head)) end
local now = redis.call('TIME')
local t = string.format('%d', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
for i = skip + 1, n do
  redis.call('XADD', KEYS[3], string.format('%d-0', first + i - 1), 'e', ARGV[3], 't', t, 'f', ARGV[3 + i])
end
redis.call('HSET', KEYS[2], 'head', first + n - 1, 'head_epoch', ARGV[3],
           'head_crc', string.sub(ARGV[3 + n], 5, 8), 'writer', ARGV[1])
return {'OK', first + n - 1}
"""

PUBLISH_SNAPSHOT = """#!lua
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED lease lost') end
local m = redis.call('HMGET', KEYS[2], 'head', 'snap_gen', 'prev_snap_gen', 'snap_index')
if tonumber(m[1]) < tonumber(ARGV[4]) then return {'NOTYET'} end
if tonumber(ARGV[2]) <= tonumber(m[2]) or ARGV[3] ~= m[3] then return {'STALE'} end
if redis.call('HLEN', KEYS[3]) ~= tonumber(ARGV[7]) then return {'INCOMPLETE'} end
redis.call('HSET', KEYS[2], 'prev_snap_gen', m[2], 'prev_snap_index', m[4], 'snap_gen', ARGV[2],
           'snap_index', ARGV[4], 'snap_epoch', ARGV[5], 'snap_crc', ARGV[6], 'snap_chunks', ARGV[7],
           'snap_bytes', ARGV[8], 'snap_digest', ARGV[9])
if tonumber(m[3]) > 0 then redis.call('UNLINK', KEYS[4]) end
return {'OK', tonumber(m[4])}
"""

#: every script, for loading them all at start (SCRIPT LOAD), before the first EVALSHA
ALL = (INIT, ACQUIRE, RENEW, RELEASE, APPEND, PUBLISH_SNAPSHOT)


def init_keys(keys: Keys) -> list[str]:
    return [keys.meta]


def acquire_keys(keys: Keys) -> list[str]:
    return [keys.lease, keys.epoch, keys.epochs, keys.meta]


def lease_keys(keys: Keys) -> list[str]:
    """RENEW's and RELEASE's."""
    return [keys.lease]


def append_keys(keys: Keys) -> list[str]:
    return [keys.lease, keys.meta, keys.log]


def publish_keys(keys: Keys, generation: int, old: int) -> list[str]:
    """PUBLISH_SNAPSHOT's: the new generation, and the one before the previous (unlinked)."""
    return [keys.lease, keys.meta, keys.snapshot(generation), keys.snapshot(old)]


@dataclass(frozen=True)
class Acquired:
    epoch: int
    token: bytes


@dataclass(frozen=True)
class Refused:
    """ACQUIRE did not grant the lease: `why` is HELD, BEHIND_OR_DIVERGED or WRONG_CLUSTER."""

    why: str
    detail: tuple[bytes | int | None, ...] = ()


def parse_acquire(reply: list[object]) -> Acquired | Refused:
    status = _text(reply[0])
    if status == "OK":
        token = reply[2]
        assert isinstance(token, bytes)
        return Acquired(int(reply[1]), token)  # type: ignore[call-overload]
    return Refused(status, tuple(reply[1:]))  # type: ignore[arg-type]


def parse_append(reply: list[object]) -> tuple[str, int]:
    """(`OK` or `DUP`, the head index after the call)."""
    return _text(reply[0]), int(reply[1])  # type: ignore[call-overload]


#: error replies of APPEND after which nothing more may be appended by this primary
FENCES = ("FENCED", "GAP", "NOLOG")


def is_fence(message: str) -> bool:
    """Whether an APPEND error means this node is no longer the writer (vs. retry later)."""
    return message.split(" ", 1)[0] in FENCES


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

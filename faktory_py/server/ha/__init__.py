"""The op log in Redis: the trio/coredis drivers (connection and start-up checks, boot and
lease acquisition, the fenced appender with its lease renewer). coredis is imported here
only; the sans-io parts are in store/redis/."""

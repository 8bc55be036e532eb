"""The op log in Redis, sans-io: key names, script texts and their replies, the lease
state machine and the entry codec. The trio/coredis drivers are in server/ha/."""

"""
Shared state for a fleet of processes: the store interface and Redis.

``_protocol`` holds :class:`StateStore`, what the policies ask of a store
(the in-process default is no store at all: each policy's own fields);
``_lua`` the Redis side, one atomic Lua script per shared operation; and
``_redis`` :class:`RedisStore`, which runs them on coredis and fails open.
"""

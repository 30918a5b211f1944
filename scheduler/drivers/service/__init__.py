"""The load-cap gRPC service for grid coordinators (a driver over the scheduling core).

Modules: :mod:`.events` (events and their validation), :mod:`.store` (SQLite),
:mod:`.auth` (bearer tokens and scopes), :mod:`.planner` (the plan under caps),
:mod:`.server` (gRPC), :mod:`.client` and :mod:`.commands` (CLI). The API is
``proto/greensched/v1/loadcap.proto``; ``make proto`` regenerates ``pb/``.
"""

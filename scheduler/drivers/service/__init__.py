"""The control plane for operators and grid coordinators (a driver over the scheduling core).

Modules: :mod:`.events` (events and their validation), :mod:`.store` (SQLite),
:mod:`.auth` (bearer tokens and scopes), :mod:`.planner` (the plan under caps),
:mod:`.loop` (operating days on the clock, each slot run by the settlement engine),
:mod:`.servicer` (gRPC methods on ``grpc.aio``), :mod:`.server` (wiring and lifetime),
:mod:`.client` and :mod:`.commands` (CLI), :mod:`.demo` (the whole
system in one run). The API is ``proto/greensched/v1/loadcap.proto``; ``make proto``
regenerates ``pb/``.
"""

import os

# gRPC's C core logs every fork Ray makes while its threads run; keep its log to errors
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

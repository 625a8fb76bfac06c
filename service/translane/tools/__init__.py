"""The tools built on the service: `translate` and `models` (client), `batch`, `file` (files), `loadtest`.

Each is a client of the service's gRPC API, never of its internals: a tool reaches the
service through a channel (`translane.tls`), its messages (`translane.v1`) and the formats
its callers write (`translane.wire`), and may share the small client-side helpers
(`translane.calls`, `translane.languages`, `translane.tokens`, `translane.tasks`); it never
imports the engine, the lanes, the governor, the server, the cache or the budgets
(tests/test_layout.py holds them to it).

Each owns its subcommands: `add_parser(subparsers, ...)` adds them to the `translane` command
(translane.cli), with the function that runs them.
"""

"""nsconform: a pytest harness that proves, by behaviour, what a Linux sandbox really isolates.

The engine's folders, by concern: sandbox/ (a sandbox's life), inside/ (the code that runs inside one),
runtimes/ (runtimes, profiles and the bundled ones), host/ (the host's side of a comparison),
hygiene/ (names, reaping, the host audit), report/ (the report writers). The pytest fixtures are
`nsconform.fixtures`, the checks `nsconform.isolation_checks`, the plugin `nsconform.plugin`, the
command `nsconform.cli`.
"""

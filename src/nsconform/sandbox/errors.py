"""The errors of a sandbox's life: each makes a result `error`, never a verdict."""


class SandboxError(RuntimeError):
    """The sandbox or its probe misbehaved: no verdict can be drawn from it."""


class ProbeTimeout(SandboxError):
    """The probe did not answer within --nsc-probe-timeout."""

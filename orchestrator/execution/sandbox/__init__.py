"""The sandbox every tool runs in: layers chosen by probing the host, a policy per card.

:mod:`~.probe` (what this host permits), :mod:`~.policy` (what a tool may do), :mod:`~.launch`
(starting a process under a policy), :mod:`~.bwrap` (the namespace layer), :mod:`~.confine`
(seccomp and Landlock), :mod:`~.cgroup` (memory and process caps), :mod:`~.transfer` (files in
and out) and :mod:`~.run_file` (``orchestrator sandbox exec``).
"""

from orchestrator.execution.sandbox.launch import Launch, Sandbox
from orchestrator.execution.sandbox.policy import Policy, policy_for_card
from orchestrator.execution.sandbox.probe import HostProbe, probe_host

__all__ = [
    "HostProbe",
    "Launch",
    "Policy",
    "Sandbox",
    "policy_for_card",
    "probe_host",
]

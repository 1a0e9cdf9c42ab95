"""The ``load-balancer`` step: take this target's server out of a balancer (``remove``) or put it back
(``add``), on every HAProxy node the balancer lists.

``remove``: drain (no new requests; open ones finish) → wait until it holds no session on any node (past
``drain_timeout``: fail and leave it in DRAIN, or with ``force`` cut the sessions) → MAINT. ``add``: wait
for HAProxy's own health checks to pass, then ready → UP (past ``up_timeout``: fail, it gets no traffic).

The balancer's definition comes from the infrastructure (the deploy engine puts the models in
``ctx.shared["load_balancers"]``); one client per balancer lives for the whole deployment in ``ctx.shared``.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from snapshots.errors import StepFailed
from snapshots.model.infrastructure import LoadBalancer
from steps.context import StepContext
from steps.kinds.haproxy import HAProxy

DEFAULT_SERVER = "#{Machine.Name}"
_GUARD = threading.Lock()


def balancer_client(shared: dict[str, Any], name: str, *, log: Callable[[str], None] | None = None,
                    step: str, target: str | None = None) -> tuple[LoadBalancer, HAProxy]:
    """The balancer's model and its (cached) HAProxy client; a clear error when it is not defined."""
    balancers: dict[str, LoadBalancer] = shared.get("load_balancers", {})
    model = balancers.get(name)
    if model is None:
        raise StepFailed(f"load balancer {name!r} is not defined in the infrastructure (defined: "
                         f"{', '.join(sorted(balancers)) or 'none'})", step=step, target=target)
    key = f"haproxy:{name}"
    with _GUARD:
        client = shared.get(key)
        if client is None:
            client = HAProxy.from_model(model, ssh=shared.get("ssh_for"), log=log)
            shared[key] = client
    return model, client


def server_name(ctx: StepContext) -> str:
    """The server's name in the backend: the step's ``server`` template, or the target's ``balancer_server``
    when the step keeps the default."""
    step = ctx.step
    if step.server == DEFAULT_SERVER and ctx.target is not None and ctx.target.balancer_server:
        return str(ctx.target.balancer_server)
    return ctx.render(step.server, f"{ctx.where} server").strip()


def run(ctx: StepContext) -> None:
    step = ctx.step
    model, shared_client = balancer_client(ctx.shared, step.balancer, step=step.name, target=ctx.target_name)
    haproxy = copy.copy(shared_client)  # same nodes (and SSH sessions), this step's own log sink
    haproxy.log = ctx.log
    server = server_name(ctx)
    if step.action == "remove":
        drained = haproxy.drain_and_remove(model.backend, server, float(step.drain_timeout), force=step.force,
                                           cancel=ctx.cancel)
        if drained.forced:
            ctx.log(f"{model.name}: {model.backend}/{server} forced out, {drained.cut_sessions} session(s) cut")
        ctx.log(f"{model.name}: {model.backend}/{server} out of rotation (MAINT) on {len(haproxy.nodes)} "
                f"node(s) after {drained.seconds:.2f}s")
    else:
        seconds = haproxy.add_and_wait_up(model.backend, server, float(step.up_timeout), cancel=ctx.cancel)
        ctx.log(f"{model.name}: {model.backend}/{server} UP and in rotation on {len(haproxy.nodes)} node(s) "
                f"after {seconds:.2f}s")

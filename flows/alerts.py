"""Alerts through Prefect's own machinery: events from fits and waves, automations to a webhook.

Every fit that ends not converged or failed emits ``misterp.fit.not_converged`` or
``misterp.fit.failed`` (resource: the model's key; payload: its diagnostics), and every published
wave emits ``misterp.wave.finished`` with its counts (label ``misterp.health``: ``healthy`` or
``unhealthy``). ``misterp alerts install --webhook URL`` creates a Webhook block and two
automations that POST these to the URL. Automations run on the server (self-hosted open-source
``prefect server`` included), so an alert fires even when the pod that failed is gone.
"""

from __future__ import annotations

import json
import math
from typing import Any, cast
from uuid import UUID

from misterp.health import RunHealth
from misterp.records import FitSummary
from misterp.status import FitStatus

FIT_EVENTS = ("misterp.fit.not_converged", "misterp.fit.failed")
WAVE_EVENT = "misterp.wave.finished"
HEALTH_LABEL = "misterp.health"
FIT_AUTOMATION = "misterp: fit needs attention"
WAVE_AUTOMATION = "misterp: wave finished with problems"
WEBHOOK_BLOCK = "misterp-alerts"

# Rendered by the server with the triggering event. A JSON object with a "text" field, so a
# Slack (or Mattermost, Teams workflow) incoming webhook shows it as is, and the structured
# fields are there for anything else.
FIT_PAYLOAD = json.dumps(
    {
        "text": (
            "misterp: model {{ event.resource['misterp.key'] }} of wave "
            "{{ event.resource['misterp.wave'] }} ended {{ event.payload.status }} after "
            "{{ event.payload.attempts }} attempt(s): {{ event.payload.problem }}. Its estimates "
            "are flagged. Refit: misterp rerun --wave {{ event.resource['misterp.wave'] }}"
        ),
        "event": "{{ event.event }}",
        "wave": "{{ event.resource['misterp.wave'] }}",
        "model": "{{ event.resource['misterp.key'] }}",
        "status": "{{ event.payload.status }}",
        "attempts": "{{ event.payload.attempts }}",
        "r_hat_max": "{{ event.payload.r_hat_max }}",
        "ess_bulk_min": "{{ event.payload.ess_bulk_min }}",
        "ess_tail_min": "{{ event.payload.ess_tail_min }}",
        "divergences": "{{ event.payload.divergences }}",
        "problem": "{{ event.payload.problem }}",
        "occurred": "{{ event.occurred }}",
    }
)
WAVE_PAYLOAD = json.dumps(
    {
        "text": "misterp: {{ event.payload.headline }}. Output: {{ event.payload.output }}",
        "event": "{{ event.event }}",
        "wave": "{{ event.resource['misterp.wave'] }}",
        "health": "{{ event.resource['misterp.health'] }}",
        "models": "{{ event.payload.counts.models }}",
        "converged": "{{ event.payload.counts.converged }}",
        "not_converged": "{{ event.payload.counts.not_converged }}",
        "failed": "{{ event.payload.counts.failed }}",
        "problems": "{{ event.payload.problems | join(', ') }}",
        "occurred": "{{ event.occurred }}",
    }
)


def _number(value: float | int | None) -> float | int | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def fit_event_payload(summary: FitSummary) -> dict[str, Any]:
    """The diagnostics an alert about one fit carries."""
    problem = summary.error or "; ".join(summary.failures) or "missed the thresholds"
    return {
        "status": summary.status.value,
        "attempts": summary.attempts,
        "r_hat_max": _number(summary.r_hat_max),
        "ess_bulk_min": _number(summary.ess_bulk_min),
        "ess_tail_min": _number(summary.ess_tail_min),
        "divergences": summary.divergences,
        "bfmi_min": _number(summary.bfmi_min),
        "seconds": _number(summary.seconds),
        "problem": problem,
    }


def emit_fit_event(wave: str, summary: FitSummary) -> None:
    """Emit ``misterp.fit.<status>`` for a fit that did not converge; nothing for one that did."""
    if summary.status is FitStatus.CONVERGED:
        return
    from prefect.events import emit_event

    emit_event(
        event=f"misterp.fit.{summary.status.value}",
        resource={
            "prefect.resource.id": f"misterp.model.{wave}.{summary.key}",
            "prefect.resource.name": summary.key,
            "misterp.wave": wave,
            "misterp.key": summary.key,
        },
        payload=fit_event_payload(summary),
    )


def emit_wave_event(health: RunHealth, output_uri: str, *, family: str = "wave") -> None:
    """Emit ``misterp.wave.finished`` with the counts, labelled healthy or unhealthy.

    A media-mix run emits the same event (``family`` ``mmm``: resource ``misterp.mmm.RUN``),
    so the one wave automation alerts on either.
    """
    from prefect.events import emit_event

    emit_event(
        event=WAVE_EVENT,
        resource={
            "prefect.resource.id": f"misterp.{family}.{health.run}",
            "prefect.resource.name": f"{health.subject} {health.run}",
            "misterp.wave": health.run,
            HEALTH_LABEL: "healthy" if health.healthy else "unhealthy",
        },
        payload={
            "counts": health.counts.model_dump(),
            "headline": health.headline(),
            "output": output_uri,
            "problems": [m.key for m in health.problems][:50],
        },
    )


def install_alerts(webhook_url: str, *, per_fit: bool = True) -> dict[str, UUID]:
    """Create (or replace) the webhook block and the automations; returns their ids.

    Idempotent: running it again with a new URL replaces the block and the automations.
    """
    from prefect.automations import Automation
    from prefect.blocks.webhook import Webhook
    from prefect.client.orchestration import get_client
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import EventTrigger, Posture

    # Prefect's sync-compatible calls return their value when called from sync code
    block_id = cast(
        UUID, Webhook(method="POST", url=webhook_url).save(WEBHOOK_BLOCK, overwrite=True)
    )
    with get_client(sync_client=True) as client:
        for name in (FIT_AUTOMATION, WAVE_AUTOMATION):
            for existing in client.read_automations_by_name(name):
                client.delete_automation(existing.id)
    ids: dict[str, UUID] = {"webhook_block": block_id}
    if per_fit:
        fit = Automation(
            name=FIT_AUTOMATION,
            description="A misterp fit ended not converged or failed: its estimates are flagged.",
            trigger=EventTrigger(
                expect=set(FIT_EVENTS),
                match={"prefect.resource.id": "misterp.model.*"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[CallWebhook(block_document_id=block_id, payload=FIT_PAYLOAD)],
        ).create()
        ids["fit_automation"] = _created_id(cast(Automation, fit))
    wave = Automation(
        name=WAVE_AUTOMATION,
        description="A misterp wave was published with failed or not converged models.",
        trigger=EventTrigger(
            expect={WAVE_EVENT},
            match={"prefect.resource.id": "misterp.wave.*", HEALTH_LABEL: "unhealthy"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[CallWebhook(block_document_id=block_id, payload=WAVE_PAYLOAD)],
    ).create()
    ids["wave_automation"] = _created_id(cast(Automation, wave))
    return ids


def _created_id(automation: Any) -> UUID:
    """The id the server gave a created automation (it always gives one)."""
    created: UUID | None = automation.id
    if created is None:
        raise RuntimeError(f"automation {automation.name} was created without an id")
    return created

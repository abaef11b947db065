"""The Experiment page: results, guardrails, the chart, and the admin controls with their confirmations."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from feedback_ui.charts import COLORS, Bar, bar_chart
from feedback_ui.experiment import ExperimentView
from feedback_ui.routes.deps import Admin, AdminWrite, Annotator
from feedback_ui.templating import is_htmx, render
from qa_core.web.errors import InvalidRequest

router = APIRouter(prefix="/experiment")
VERSION = r"^[0-9]+$"


def chart(view: ExperimentView) -> str:
    bars = [
        Bar(f"{v.variant} v{v.version}", f"{v.positive}/{v.rated} rated good", v.rate, v.interval, COLORS[v.variant])
        for v in view.variants
    ]
    if view.pairwise is not None:
        duel = view.pairwise
        bars.append(Bar("challenger wins (pairwise)", f"{duel.wins}-{duel.losses}-{duel.ties} (W-L-T)", duel.rate,
                        duel.interval, COLORS["pairwise"]))  # fmt: skip
    return bar_chart(bars, "Rated good, and pairwise wins, with 95% intervals")


@router.get("", response_class=HTMLResponse)
async def experiment_page(request: Request, user: Annotator) -> Response:
    view = await request.app.state.experiment.view()
    settings = request.app.state.settings
    checks = {v.variant: view.guardrails.checks(v.variant, settings) for v in view.variants} if view.guardrails else {}
    return render(request, "experiment.html", view=view, chart=chart(view), checks=checks)


# --8<-- [start:confirm]
@router.get("/confirm/{action}", response_class=HTMLResponse)
async def confirm(
    request: Request,
    user: Admin,
    action: Literal["share", "promote", "roll_back"],
    share_percent: Annotated[float | None, Query(ge=0, le=100)] = None,
) -> Response:
    """Every control asks first, showing exactly what will change, and posts the version it showed."""
    if action == "share" and share_percent is None:
        raise InvalidRequest("share_percent: give the challenger's new share, from 0 to 100", field="share_percent")
    view = await request.app.state.experiment.view()
    settings = request.app.state.settings
    checks = view.guardrails.checks("challenger", settings) if view.guardrails else []
    template = "_confirm.html" if is_htmx(request) else "confirm.html"
    return render(request, template, action=action, view=view, share_percent=share_percent, checks=checks)


# --8<-- [end:confirm]


# --8<-- [start:control-routes]
@router.post("/share")
async def set_share(
    request: Request, user: AdminWrite, share_percent: Annotated[float, Form(ge=0, le=100)]
) -> Response:
    await request.app.state.experiment.set_share(user.username, share_percent / 100)
    request.session["flash"] = (
        f"The challenger's share is now {share_percent:g}%. qa-api applies it within its poll interval."
    )
    return RedirectResponse("/experiment", status_code=303)


@router.post("/promote")
async def promote(
    request: Request, user: AdminWrite, expected_challenger: Annotated[str, Form(pattern=VERSION)]
) -> Response:
    version = await request.app.state.experiment.promote(user.username, expected_challenger)
    request.session["flash"] = f"Version {version} is now the champion."
    return RedirectResponse("/experiment", status_code=303)


@router.post("/roll-back")
async def roll_back(
    request: Request, user: AdminWrite, expected_previous: Annotated[str, Form(pattern=VERSION)]
) -> Response:
    version = await request.app.state.experiment.roll_back(user.username, expected_previous)
    request.session["flash"] = f"Rolled back: version {version} is the champion again."
    return RedirectResponse("/experiment", status_code=303)


# --8<-- [end:control-routes]

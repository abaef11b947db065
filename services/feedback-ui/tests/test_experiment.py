"""The Experiment page's numbers, from ratings and preferences submitted through the API, against values
worked out by hand. Real PostgreSQL, a real MLflow registry with two program versions."""

from __future__ import annotations

import re
import uuid

import pytest

from qa_core import contracts, registry
from qa_core.settings import CoreSettings
from tests.support.programs import register_program

pytestmark = pytest.mark.slow


def cells(page: str, variant: str) -> dict[str, str]:
    row = re.search(rf'<tr class="variant-{variant}">(.*?)</tr>', page, re.S).group(1)  # type: ignore[union-attr]
    return {
        "rated": re.search(r'class="rated" data-good="(\d+)">(\d+)<', row).group(2),  # type: ignore[union-attr]
        "good": re.search(r'class="rated" data-good="(\d+)"', row).group(1),  # type: ignore[union-attr]
        "rate": re.search(r'class="rate">([^<]+)<', row).group(1),  # type: ignore[union-attr]
        "win_rate": re.search(r'class="win-rate">([^<]+)<', row).group(1),  # type: ignore[union-attr]
    }


# --8<-- [start:experiment-stats-test]
def test_the_experiment_page_counts_verdicts_per_version_as_worked_out_by_hand(deployment) -> None:
    """Champion (v1): t1 good; t2 wrong; t3 good by ann but wrong by robot, so not good; t4 wrong, then ann
    changes her mind to good. That is 2 good of 4. Challenger (v2): three answers, all good: 3 of 3.
    Side by side: the challenger wins 2 and ties 1, a win rate of (2 + 1/2) / 3 = 83.3%.
    P(challenger better): X ~ Beta(1+3, 1+0) has CDF x⁴, Y ~ Beta(1+2, 1+2), so P(X > Y) = 1 - E[Y⁴]
    = 1 - (3/6)(4/7)(5/8)(6/9) = 1 - 5/42 = 37/42 = 88.1%."""
    mlflow_client = registry.configure_mlflow(
        CoreSettings(_env_file=None, mlflow_tracking_uri=deployment.env["MLFLOW_TRACKING_URI"])
    )
    model = deployment.env["REGISTERED_MODEL_NAME"]
    v1, v2 = register_program(mlflow_client, model, 2), register_program(mlflow_client, model, 1)
    mlflow_client.set_registered_model_alias(model, contracts.CHAMPION_ALIAS, v1)
    mlflow_client.set_registered_model_alias(model, contracts.CHALLENGER_ALIAS, v2)
    t1, t2, t3, t4 = (deployment.trace(question=f"champion {i}", version=v1) for i in range(4))
    t5, t6, t7 = (deployment.trace(question=f"challenger {i}", version=v2, variant="challenger") for i in range(3))

    with deployment.app() as client:
        csrf = deployment.login(client, "ann")

        def rate(trace_id: str, rating: str, as_robot: bool = False) -> None:
            headers = deployment.bearer() if as_robot else {"X-CSRF-Token": csrf}
            body = {"trace_id": trace_id, "rating": rating, "idempotency_key": uuid.uuid4().hex}
            assert client.post("/api/feedback", json=body, headers=headers).status_code == 202

        def prefer(a: str, b: str, preferred: str) -> None:
            body = {"trace_id_a": a, "trace_id_b": b, "preferred": preferred, "idempotency_key": uuid.uuid4().hex}
            assert client.post("/api/preferences", json=body, headers={"X-CSRF-Token": csrf}).status_code == 202

        for trace_id, rating in ((t1, "up"), (t2, "down"), (t3, "up"), (t4, "down"), (t4, "up"),
                                 (t5, "up"), (t6, "up"), (t7, "up")):  # fmt: skip
            rate(trace_id, rating)
        rate(t3, "down", as_robot=True)
        prefer(t1, t5, "b")  # challenger wins
        prefer(t6, t2, "a")  # challenger wins
        prefer(t3, t7, "tie")
        page = client.get("/experiment").text

    champion, challenger = cells(page, "champion"), cells(page, "challenger")
    assert (champion["rated"], champion["good"], champion["rate"]) == ("4", "2", "50.0%")
    assert (challenger["rated"], challenger["good"], challenger["rate"]) == ("3", "3", "100.0%")
    assert challenger["win_rate"] == "83.3%"
    assert champion["win_rate"] == "16.7%"
    assert re.search(r'class="prob">([^<]+)<', page).group(1) == "88.1%"  # type: ignore[union-attr]
    assert "Side by side, the challenger won 2, lost 0 and tied 1." in page
    assert "Too early to call" in page


# --8<-- [end:experiment-stats-test]

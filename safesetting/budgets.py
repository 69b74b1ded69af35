"""What a project has spent and has left, for its members (and for auditors and admins)."""

from __future__ import annotations

from dataclasses import dataclass

from policies.epsilon import to_float
from policies.reasons import reason
from safesetting.caller import Caller, Role
from safesetting.control import Control
from safesetting.errors import PermissionDeniedError
from safesetting.store import dataset_spent, get_project, project_spent
from safesetting.store.registry import member_project
from safesetting.validation import check_id


@dataclass(frozen=True)
class BudgetSummary:
    """Exact micro-ε figures; ``to_json`` derives the floats shown to people."""

    project: str
    budget_micro: int
    spent_micro: int
    dataset_spent_micro: int
    dataset_cap_micro: int

    @property
    def remaining_micro(self) -> int:
        return max(self.budget_micro - self.spent_micro, 0)

    def to_json(self) -> dict[str, object]:
        return {
            "project": self.project,
            "budget_epsilon": to_float(self.budget_micro),
            "epsilon_spent": to_float(self.spent_micro),
            "budget_remaining": to_float(self.remaining_micro),
            "dataset_epsilon_spent": to_float(self.dataset_spent_micro),
            "dataset_epsilon_cap": to_float(self.dataset_cap_micro),
        }


def budget_summary(control: Control, project_id: str, caller: Caller) -> BudgetSummary:
    """The budget of ``project_id`` as ``caller`` may see it.

    A researcher sees only projects they are members of (an unknown project looks the same,
    so ids cannot be probed); auditors and admins see any.
    """
    check_id("project", project_id)
    with control.reader() as conn:
        if caller.role is Role.RESEARCHER:
            # One lookup decides, the same for an unknown project and someone else's.
            project = member_project(conn, project_id, caller.id)
        else:
            project = get_project(conn, project_id)  # NotFoundError for an unknown one
        if project is None:
            raise PermissionDeniedError(
                f"project {project_id} is not one of yours",
                [reason("not_a_member", researcher=caller.id, project=project_id)],
            )
        return BudgetSummary(
            project=project.id,
            budget_micro=project.budget_micro,
            spent_micro=project_spent(conn, project.id),
            dataset_spent_micro=dataset_spent(conn),
            dataset_cap_micro=control.policy.epsilon.dataset_cap,
        )

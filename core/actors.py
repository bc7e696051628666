"""Who changed something: a user (session), an integration token, a Celery task or the system."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ActorType = Literal["user", "token", "task", "system"]


@dataclass(frozen=True, slots=True)
class Actor:
    type: ActorType
    id: str
    label: str
    user_id: int | None = None

    @classmethod
    def for_user(cls, user, *, via_token: bool = False) -> Actor:
        return cls(
            type="token" if via_token else "user",
            id=str(user.pk),
            label=user.get_username(),
            user_id=user.pk,
        )

    @classmethod
    def for_request(cls, request) -> Actor:
        from rest_framework.authtoken.models import Token

        return cls.for_user(request.user, via_token=isinstance(getattr(request, "auth", None), Token))

    @classmethod
    def for_task(cls, task_name: str, task_id: str | None) -> Actor:
        return cls(type="task", id=task_id or "", label=task_name)

    @classmethod
    def system(cls, label: str) -> Actor:
        return cls(type="system", id="", label=label)

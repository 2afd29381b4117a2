"""The control API's request and response models (pydantic): what the OpenAPI document
describes and what every route validates against."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

# what a path segment or a service name may be: names, never free text
NAME = r"^[A-Za-z0-9_.:@/-]{1,400}$"


class Reason(BaseModel):
    reason: str = Field("", max_length=500, description="why; kept in the audit trail")


class TriggerRequest(BaseModel):
    service: str = Field(pattern=NAME, description="the service to recover")
    reason: str = Field("", max_length=500)


class ThresholdRequest(BaseModel):
    threshold: float = Field(gt=0, le=1, description="the error rate (0-1] over which the "
                             "service's recovery starts (an error_threshold trigger)")
    window_s: float = Field(60.0, ge=5, le=3600, description="over this many seconds")
    reason: str = Field("", max_length=500, description="why; kept in the audit trail")


class TokenRequest(BaseModel):
    role: Literal["viewer", "operator", "auditor", "admin"]
    name: str = Field(min_length=1, max_length=100,
                      description="who holds it: a handle, never a patient or clinician name")


class Circuit(BaseModel):
    name: str
    service: str
    state: str | None
    version: int
    retry_at: float | None = Field(description="UTC epoch s when a trial call may next run")
    isolated: list[str] = Field(description="processes set aside as outliers")
    lease_holder: str | None
    reason: str
    calls: int
    failure_rate: float
    processes: dict[str, Any] = Field(description="per process: calls and failure rate")
    settings: dict[str, Any] = Field(default_factory=dict,
                                     description="the breaker's thresholds and windows")


class Health(BaseModel):
    circuits: list[Circuit]
    health_checks: dict[str, Any]
    services: dict[str, dict[str, int]] = Field(description="calls, errors, fallback answers")
    recent_failures: list[dict[str, Any]]
    since: float


class AuditPage(BaseModel):
    items: list[dict[str, Any]]
    total: int
    offset: int
    limit: int


class Token(BaseModel):
    id: str
    name: str
    role: str
    created_at: float
    created_by: str
    revoked_at: float | None


class NewToken(Token):
    token: str = Field(description="the secret: shown once, stored only as a hash")


class Problem(BaseModel):
    detail: str

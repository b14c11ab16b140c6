"""Cron schedule state and tick claims in the timer table ``<project>-<environment>-timers``.

The table is shared with delayed jobs (:mod:`infra.timers`); schedules own the ``pk``
values ``schedule#<name>`` (:data:`infra.timers.SCHEDULE_PK_PREFIX`). Per schedule:

- ``sk = state``: ``paused``; ``cursor`` (the tick id up to which every tick is settled:
  fired, or skipped as missed or paused); the last fire (``last_tick``, ``last_job_id``,
  ``last_fired_at``, ``last_kind`` = ``tick`` | ``trigger``). Never expires.
- ``sk = tick#<tick id>``: the claim of one tick. Created with a conditional put
  (``attribute_not_exists``), so one replica wins each tick; it holds the job id, the
  owner, ``state`` (``claimed``, then ``fired``) and a lease: a replica killed between
  claim and publish leaves a ``claimed`` item whose lease runs out, and another replica
  takes it over (a conditional update on the old lease) and publishes the same job id.
  Claims expire (``expires_at``, DynamoDB time to live) :data:`CLAIM_RETENTION_S` after
  their tick.

Tick ids (``2026-03-29T01:00:00Z``) sort as strings in time order, which is what lets
conditions such as ``cursor < :tick`` keep the cursor moving forward only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from infra import aws
from infra.aws.errors import describe_aws_error, is_condition_failed, is_table_missing
from infra.aws.items import string_value as _s
from infra.aws.names import TABLE_PARTITION_KEY, TABLE_SORT_KEY, TABLE_TTL_ATTRIBUTE
from infra.cron import parse_tick_id, tick_id
from infra.errors import AwsError
from infra.timers import SCHEDULE_PK_PREFIX

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

#: A claim item is deleted (time to live) this long after its tick: far longer than any
#: replica looks back (``misfire_grace_s`` ≤ 1 day, catch-up from the cursor).
CLAIM_RETENTION_S = 7 * 86400.0
STATE_SK = "state"
_TICK_SK = "tick#"
#: DynamoDB calls fail fast: the scheduler's loop must not stall on one schedule.
CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 3.0
#: BatchGetItem takes at most this many keys.
BATCH_GET_MAX = 100

ClaimKind = Literal["won", "fired", "held"]


class ScheduleStoreError(AwsError):
    """The timer table could not be read or written (one line: what and why)."""


@dataclass(frozen=True)
class ScheduleState:
    """What the table knows of one schedule (defaults: never seen)."""

    name: str
    paused: bool = False
    #: Every tick at or before this one is settled (None: the schedule never ran).
    cursor: datetime | None = None
    last_tick: str | None = None
    last_job_id: str | None = None
    last_fired_at: datetime | None = None
    #: ``tick`` (a scheduled tick) or ``trigger`` (``conveyor schedules trigger``).
    last_kind: str | None = None


@dataclass(frozen=True)
class Claim:
    """What a claim attempt found: ``won`` (publish it), ``fired`` (another replica did),
    ``held`` (another replica holds a live lease on it: look again later)."""

    kind: ClaimKind
    job_id: str
    owner: str | None = None


def schedule_pk(name: str) -> str:
    """The partition key of schedule ``name``'s items."""
    return f"{SCHEDULE_PK_PREFIX}{name}"


def _n(value: float) -> AttributeValueTypeDef:
    return {"N": f"{value:.3f}"}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return str(value["S"]) if isinstance(value, dict) and "S" in value else None


def _number(item: dict[str, Any], name: str) -> float | None:
    value = item.get(name)
    return float(value["N"]) if isinstance(value, dict) and "N" in value else None


def _state(name: str, item: dict[str, Any] | None) -> ScheduleState:
    if not item:
        return ScheduleState(name)
    cursor = _text(item, "cursor")
    fired_at = _text(item, "last_fired_at")
    return ScheduleState(
        name=name,
        paused=bool(item.get("paused", {}).get("BOOL", False)),
        cursor=parse_tick_id(cursor) if cursor else None,
        last_tick=_text(item, "last_tick"),
        last_job_id=_text(item, "last_job_id"),
        last_fired_at=datetime.fromisoformat(fired_at) if fired_at else None,
        last_kind=_text(item, "last_kind"),
    )


class ScheduleStore:
    """Reads and writes schedule state and tick claims in the table ``table_name``.

    Reads raise :class:`ScheduleStoreError`; so do writes (the firer decides what a
    failure means for a tick). The client is asked of :func:`infra.aws.client` at each
    call (per process, thread-safe).
    """

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @staticmethod
    def _ddb() -> DynamoDBClient:
        return aws.client(
            "dynamodb", connect_timeout_s=CONNECT_TIMEOUT_S, read_timeout_s=READ_TIMEOUT_S
        )

    def _error(self, doing: str, exc: ClientError | BotoCoreError) -> ScheduleStoreError:
        if isinstance(exc, ClientError) and is_table_missing(exc):
            return ScheduleStoreError(
                f"{doing}: the timer table {self.table_name} does not exist:"
                " run `conveyor infra apply`"
            )
        return ScheduleStoreError(f"{doing}: {describe_aws_error(exc)}")

    @staticmethod
    def _key(name: str, sk: str) -> dict[str, AttributeValueTypeDef]:
        return {TABLE_PARTITION_KEY: _s(schedule_pk(name)), TABLE_SORT_KEY: _s(sk)}

    # -- state ------------------------------------------------------------------------

    def state(self, name: str) -> ScheduleState:
        """Schedule ``name``'s state (a consistent read)."""
        try:
            answer = self._ddb().get_item(
                TableName=self.table_name, Key=self._key(name, STATE_SK), ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._error(f"reading schedule '{name}'", exc) from exc
        return _state(name, answer.get("Item"))

    def states(self, names: Iterable[str]) -> dict[str, ScheduleState]:
        """The state of every schedule in ``names`` (BatchGetItem, 100 keys per call)."""
        wanted = list(dict.fromkeys(names))
        found: dict[str, ScheduleState] = {name: ScheduleState(name) for name in wanted}
        for start in range(0, len(wanted), BATCH_GET_MAX):
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [self._key(n, STATE_SK) for n in wanted[start : start + BATCH_GET_MAX]],
                    "ConsistentRead": True,
                }
            }
            try:
                while request:
                    answer = self._ddb().batch_get_item(RequestItems=request)
                    for item in answer.get("Responses", {}).get(self.table_name, []):
                        pk = _text(item, TABLE_PARTITION_KEY) or ""
                        name = pk.removeprefix(SCHEDULE_PK_PREFIX)
                        found[name] = _state(name, item)
                    request = dict(answer.get("UnprocessedKeys") or {})
            except (ClientError, BotoCoreError) as exc:
                raise self._error("reading the schedules", exc) from exc
        return found

    def set_paused(self, name: str, paused: bool, now: datetime) -> None:
        """Pause or resume ``name``. Resuming moves the cursor to ``now``: the ticks that
        fell while it was paused are settled (never caught up)."""
        names = {"#paused": "paused"}
        values: dict[str, AttributeValueTypeDef] = {
            ":paused": {"BOOL": paused},
            ":at": _s(_iso(now)),
        }
        expression = "SET #paused = :paused, paused_changed_at = :at"
        if not paused:
            names["#cursor"] = "cursor"
            values[":cursor"] = _s(tick_id(now))
            expression += ", #cursor = :cursor"
        try:
            self._ddb().update_item(
                TableName=self.table_name,
                Key=self._key(name, STATE_SK),
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except (ClientError, BotoCoreError) as exc:
            verb = "pausing" if paused else "resuming"
            raise self._error(f"{verb} schedule '{name}'", exc) from exc

    def advance_cursor(self, name: str, tick: datetime) -> bool:
        """Move ``name``'s cursor to ``tick`` unless it is there or beyond already."""
        try:
            self._ddb().update_item(
                TableName=self.table_name,
                Key=self._key(name, STATE_SK),
                UpdateExpression="SET #cursor = :cursor",
                ConditionExpression="attribute_not_exists(#cursor) OR #cursor < :cursor",
                ExpressionAttributeNames={"#cursor": "cursor"},
                ExpressionAttributeValues={":cursor": _s(tick_id(tick))},
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return False
            raise self._error(f"moving schedule '{name}' on", exc) from exc
        except BotoCoreError as exc:
            raise self._error(f"moving schedule '{name}' on", exc) from exc
        return True

    def record_fire(self, name: str, *, job_id: str, at: datetime, tick: datetime | None) -> None:
        """Remember the last fire (``tick`` None: a manual trigger); an older one never
        replaces a newer one."""
        values: dict[str, AttributeValueTypeDef] = {
            ":job": _s(job_id),
            ":at": _s(_iso(at)),
            ":kind": _s("tick" if tick is not None else "trigger"),
            ":tick": _s(tick_id(tick) if tick is not None else ""),
        }
        try:
            self._ddb().update_item(
                TableName=self.table_name,
                Key=self._key(name, STATE_SK),
                UpdateExpression="SET last_job_id = :job, last_fired_at = :at,"
                " last_kind = :kind, last_tick = :tick",
                ConditionExpression="attribute_not_exists(last_fired_at) OR last_fired_at < :at",
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return
            raise self._error(f"recording a fire of schedule '{name}'", exc) from exc
        except BotoCoreError as exc:
            raise self._error(f"recording a fire of schedule '{name}'", exc) from exc

    # -- tick claims --------------------------------------------------------------------

    def claim(
        self,
        name: str,
        tick: datetime,
        *,
        job_id: str,
        owner: str,
        now: datetime,
        lease_s: float,
    ) -> Claim:
        """Claim ``tick`` of ``name`` for ``owner``; take over a claim whose lease ran out."""
        key = self._key(name, _TICK_SK + tick_id(tick))
        item: dict[str, AttributeValueTypeDef] = {
            **key,
            "job_id": _s(job_id),
            "owner": _s(owner),
            "state": _s("claimed"),
            "claimed_at": _s(_iso(now)),
            "lease_until": _n(now.timestamp() + lease_s),
            TABLE_TTL_ATTRIBUTE: _n(tick.timestamp() + CLAIM_RETENTION_S),
        }
        doing = f"claiming tick {tick_id(tick)} of schedule '{name}'"
        try:
            self._ddb().put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": TABLE_PARTITION_KEY},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return Claim("won", job_id, owner)
        except ClientError as exc:
            if not is_condition_failed(exc):
                raise self._error(doing, exc) from exc
            found: Any = exc.response.get("Item")
            existing: dict[str, Any] | None = found if isinstance(found, dict) else None
        except BotoCoreError as exc:
            raise self._error(doing, exc) from exc
        if not existing:  # an endpoint that does not return the old item: read it
            existing = self._get(key, doing)
            if existing is None:  # expired between the two calls: try once more later
                return Claim("held", job_id)
        holder = _text(existing, "owner")
        if _text(existing, "state") == "fired":
            return Claim("fired", _text(existing, "job_id") or job_id, holder)
        lease_until = _number(existing, "lease_until") or 0.0
        if lease_until > now.timestamp():
            return Claim("held", _text(existing, "job_id") or job_id, holder)
        return self._take_over(key, existing, owner=owner, now=now, lease_s=lease_s, doing=doing)

    def _get(self, key: dict[str, AttributeValueTypeDef], doing: str) -> dict[str, Any] | None:
        try:
            answer = self._ddb().get_item(TableName=self.table_name, Key=key, ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(doing, exc) from exc
        return answer.get("Item")

    def _take_over(
        self,
        key: dict[str, AttributeValueTypeDef],
        existing: dict[str, Any],
        *,
        owner: str,
        now: datetime,
        lease_s: float,
        doing: str,
    ) -> Claim:
        # The claimer died (or hung) between claim and publish: publish the same job id.
        job_id = _text(existing, "job_id") or ""
        old_lease = existing.get("lease_until") or _n(0)
        try:
            self._ddb().update_item(
                TableName=self.table_name,
                Key=key,
                UpdateExpression="SET #owner = :me, lease_until = :lease, claimed_at = :at",
                ConditionExpression="#state = :claimed AND lease_until = :old",
                ExpressionAttributeNames={"#owner": "owner", "#state": "state"},
                ExpressionAttributeValues={
                    ":me": _s(owner),
                    ":lease": _n(now.timestamp() + lease_s),
                    ":at": _s(_iso(now)),
                    ":claimed": _s("claimed"),
                    ":old": old_lease,
                },
            )
        except ClientError as exc:
            if is_condition_failed(exc):  # another replica took it over first
                return Claim("held", job_id, _text(existing, "owner"))
            raise self._error(doing, exc) from exc
        except BotoCoreError as exc:
            raise self._error(doing, exc) from exc
        return Claim("won", job_id, owner)

    def mark_fired(self, name: str, tick: datetime, *, owner: str, now: datetime) -> None:
        """The claimed tick was published: it is settled for good."""
        try:
            self._ddb().update_item(
                TableName=self.table_name,
                Key=self._key(name, _TICK_SK + tick_id(tick)),
                UpdateExpression="SET #state = :fired, fired_at = :at",
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#state": "state", "#owner": "owner"},
                ExpressionAttributeValues={
                    ":fired": _s("fired"),
                    ":at": _s(_iso(now)),
                    ":me": _s(owner),
                },
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return  # taken over after our lease ran out: the new owner settles it
            raise self._error(f"settling tick {tick_id(tick)} of schedule '{name}'", exc) from exc
        except BotoCoreError as exc:
            raise self._error(f"settling tick {tick_id(tick)} of schedule '{name}'", exc) from exc

    def release(self, name: str, tick: datetime, *, owner: str) -> None:
        """Give a claim back after a failed publish, so the next turn tries again at once."""
        try:
            self._ddb().delete_item(
                TableName=self.table_name,
                Key=self._key(name, _TICK_SK + tick_id(tick)),
                ConditionExpression="#owner = :me AND #state = :claimed",
                ExpressionAttributeNames={"#owner": "owner", "#state": "state"},
                ExpressionAttributeValues={":me": _s(owner), ":claimed": _s("claimed")},
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return
            raise self._error(f"releasing tick {tick_id(tick)} of schedule '{name}'", exc) from exc
        except BotoCoreError as exc:
            raise self._error(f"releasing tick {tick_id(tick)} of schedule '{name}'", exc) from exc

    def claims(self, name: str) -> Sequence[dict[str, Any]]:
        """Every tick claim of ``name`` still stored (tests and diagnostics)."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :tick)",
            "ExpressionAttributeNames": {"#pk": TABLE_PARTITION_KEY, "#sk": TABLE_SORT_KEY},
            "ExpressionAttributeValues": {":pk": _s(schedule_pk(name)), ":tick": _s(_TICK_SK)},
            "ConsistentRead": True,
        }
        try:
            while True:
                answer = self._ddb().query(**kwargs)
                items += answer.get("Items", [])
                if "LastEvaluatedKey" not in answer:
                    return items
                kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(f"listing the claims of schedule '{name}'", exc) from exc

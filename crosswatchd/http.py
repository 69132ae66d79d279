"""What every outside service's HTTP layer shares.

Each service has one module that owns its HTTP use (session, headers, limiter, status → error
translation, ``Retry-After``, in-process retries): ``providers/trakt/http.py``,
``providers/simkl/http.py``, ``sources/plex_server.py`` and ``sources/tautulli_api.py``. They
build on the pieces here:

- :data:`USER_AGENT`, sent on every request (Trakt "Required Headers", api.simkl.org
  "Headers");
- :func:`parse_retry_after`, the one ``Retry-After`` parser (delay-seconds or HTTP-date,
  RFC 9110 §10.2.3), also used by :meth:`crosswatchd.ratelimit.Limiter.observe`;
- :class:`HttpClient`, which sends one request and returns an :class:`Answer` (it never reads
  a status code, the service does), and retries an idempotent GET in-process with
  :class:`RetryGet` per :class:`GetRetry`: a few short jittered waits. POSTs never go through
  it: a ``POST /sync/history`` that timed out may have landed, and only a history look-up can
  tell.

Lenient pydantic building blocks for parsing answers (:class:`WireModel`, :data:`Lenient`,
:data:`Entries`, :data:`LenientList`) live here too, so every service reads its answers the
same way: unknown fields ignored, a wrong-typed optional field read as missing, a bad entry in
a list skipped.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import aiohttp
import backoff
import orjson
import structlog
from pydantic import BaseModel, ConfigDict, ValidationError, WrapValidator
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from crosswatchd import __version__
from crosswatchd.errors import RetryableError

if TYPE_CHECKING:
    from crosswatchd.ratelimit import Limiter

__all__ = [
    "USER_AGENT",
    "Answer",
    "Entries",
    "GetRetry",
    "HttpClient",
    "Lenient",
    "LenientList",
    "OptInt",
    "OptStr",
    "RetryGet",
    "TransportHook",
    "WireModel",
    "parse_retry_after",
    "utc_now",
]

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: The one User-Agent of every request crosswatchd sends.
USER_AGENT: Final = f"crosswatchd/{__version__}"


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (the default wall clock of this module's users)."""
    return datetime.now(UTC)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait, from a ``Retry-After`` header value; ``None`` when there is no usable one.

    RFC 9110 §10.2.3: ``Retry-After = HTTP-date / delay-seconds``.

    - delay-seconds (``"7"``; a decimal such as ``"1.5"`` is taken too): that many seconds,
      a negative number is 0;
    - an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``, and the obsolete RFC 850 and asctime
      forms): seconds from *now* (timezone-aware) until then, 0 for a date in the past;
    - ``None``, empty, garbage, ``nan``/``inf``: ``None``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # asctime and "-0000" carry no zone; HTTP-dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


# --------------------------------------------------------------------------------------------
# In-process retries of idempotent GETs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetRetry:
    """How an idempotent GET is retried in-process.

    At most ``tries`` attempts. Before attempt *n* + 1 the wait is drawn uniformly from
    [0, ``base_s`` · 2^(n−1)] seconds (full jitter), or the server's ``retry_after_s`` when
    that is longer. A failure whose ``retry_after_s`` exceeds ``max_wait_s`` is not retried
    here at all: that wait belongs in the outbox's schedule, not in a held request.
    """

    tries: int = 3
    base_s: float = 0.5
    max_wait_s: float = 5.0


def _waits(base_s: float) -> Generator[float, Exception | None, None]:
    """backoff wait generator: full-jitter exponential, at least the failure's Retry-After."""
    failure = yield 0.0  # primed by backoff with send(None)
    step = 0
    while True:
        server_s = getattr(failure, "retry_after_s", None) or 0.0
        failure = yield max(random.uniform(0.0, base_s * 2**step), server_s)
        step += 1


class RetryGet:
    """Runs an idempotent GET (an *attempt*: the request and the reading of its answer) with
    a few short, jittered in-process retries, per *policy*, of the *transient* exceptions.

    Gives up at once, re-raising, on any other exception and on a transient one whose
    ``retry_after_s`` is above ``policy.max_wait_s``; after ``policy.tries`` attempts the
    last failure is re-raised. Each retry is logged as *event* (``"simkl.get.retry"``) with
    ``tries``, ``wait_s`` and the call's context. Built once per client (the ``backoff``
    decorator is not rebuilt per request); safe to share between concurrent requests.
    """

    def __init__(
        self,
        *,
        policy: GetRetry,
        transient: type[Exception] | tuple[type[Exception], ...],
        event: str,
    ) -> None:
        self._max_wait_s = policy.max_wait_s
        self._event = event
        self._run: Callable[..., Awaitable[Any]] = backoff.on_exception(
            _waits,
            transient,
            max_tries=max(1, policy.tries),
            jitter=None,
            giveup=self._give_up,
            on_backoff=self._on_backoff,
            logger=None,
            base_s=policy.base_s,
        )(self._once)

    async def __call__(self, attempt: Callable[[], Awaitable[T]], **context: Any) -> T:
        """The attempt's result; *context* (e.g. ``path=…``) goes to the retry log lines."""
        result: T = await self._run(attempt, **context)
        return result

    @staticmethod
    async def _once(attempt: Callable[[], Awaitable[T]], **_: Any) -> T:
        return await attempt()

    def _give_up(self, exc: Exception) -> bool:
        wait_s = getattr(exc, "retry_after_s", None)
        return wait_s is not None and wait_s > self._max_wait_s

    def _on_backoff(self, details: Mapping[str, Any]) -> None:
        context = details.get("kwargs") or {}
        log.info(self._event, tries=details["tries"], wait_s=round(details["wait"], 3), **context)


# --------------------------------------------------------------------------------------------
# One request
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer, whatever its status.

    ``headers`` are the response headers (case-insensitive lookup), ``body`` the raw bytes.
    ``retry_after_s`` is the wait the answer asks for: what the limiter learnt from it
    (``Retry-After``, Trakt's ``X-Ratelimit``, 1 s for a bare 429) when there is a limiter,
    else :func:`parse_retry_after` of ``Retry-After``; ``None`` when it asks for none.
    """

    method: str
    path: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    retry_after_s: float | None

    @property
    def what(self) -> str:
        """``"GET /sync/history/movies"``: names the request in messages (never the query)."""
        return f"{self.method} {self.path}"

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        """The media type of ``Content-Type`` in lower case (``"text/html"``), or ``""``."""
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    def json(self) -> Any:
        """The decoded body; raises ``orjson.JSONDecodeError`` when it is not JSON."""
        return orjson.loads(self.body)


#: Turns a transport failure of the request named ``what`` (``"GET /path"``, or the label the
#: caller gave it) into the error the service raises for it (e.g. a
#: :class:`~crosswatchd.errors.RetryableError`). The hook must not put secrets in the
#: message: ``str(exc)`` of aiohttp errors may contain the URL.
TransportHook = Callable[[str, TimeoutError | aiohttp.ClientError], Exception]


class HttpClient:
    """One service's requests: :meth:`send` sends one and returns its :class:`Answer`;
    :meth:`retry_get` retries an idempotent GET in-process.

    *service* names the service in log events (``"simkl"`` → ``simkl.request``,
    ``simkl.get.retry``). *session* is injected and not closed here. *base_url* is prefixed
    to every path; *headers* and *params* are sent with every request (a request's own are
    merged over them; a JSON body adds ``Content-Type: application/json``); ``User-Agent`` is
    :data:`USER_AGENT`. *timeout_s* is the total time allowed per request.

    With a *limiter*, every attempt first awaits ``limiter.acquire(method)`` and every answer
    is reported to ``limiter.observe``. A timeout or an ``aiohttp.ClientError`` is raised as
    whatever *on_transport_error* returns for it. *get_retry* (default :class:`GetRetry`) and
    *retry_on* (the exception type of transient failures) drive :meth:`retry_get`. *now* is
    the wall clock (aware UTC) used for ``Retry-After`` dates when there is no limiter.
    """

    def __init__(
        self,
        *,
        service: str,
        session: aiohttp.ClientSession,
        base_url: str,
        timeout_s: float,
        on_transport_error: TransportHook,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        limiter: Limiter | None = None,
        get_retry: GetRetry | None = None,
        retry_on: type[Exception] = RetryableError,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._service = service
        self._retry_get = RetryGet(
            policy=get_retry or GetRetry(),
            transient=retry_on,
            event=f"{service}.get.retry",
        )
        self._session = session
        self._base = base_url.strip().rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._on_transport_error = on_transport_error
        self._headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self._params = dict(params or {})
        self._limiter = limiter
        self._now = now

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        bearer: str | None = None,
        label: str | None = None,
    ) -> Answer:
        """Send *method* *path* once and return the answer, whatever its status; with
        ``Authorization: Bearer`` *bearer* when given.

        Raises what the transport hook returns for a timeout or a connection/protocol error;
        the hook is told *label* (default ``"GET /path"``) as the request's name.
        """
        merged = {**self._headers, **(headers or {})}
        if bearer:
            merged["Authorization"] = f"Bearer {bearer}"
        data: bytes | None = None
        if json_body is not None:
            data = orjson.dumps(json_body)
            merged.setdefault("Content-Type", "application/json")
        query = {**self._params, **(params or {})}
        if self._limiter is not None:
            await self._limiter.acquire(method)
        try:
            async with self._session.request(
                method,
                self._base + path,
                params=query or None,
                data=data,
                headers=merged,
                timeout=self._timeout,
            ) as resp:
                status, resp_headers = resp.status, resp.headers
                body = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            # `from None`: the cause's text may carry the URL, and with it a query secret.
            raise self._on_transport_error(label or f"{method} {path}", exc) from None
        if self._limiter is not None:
            wait_s = self._limiter.observe(method, status, resp_headers)
        else:
            wait_s = parse_retry_after(resp_headers.get("Retry-After"), now=self._now())
        log.debug(f"{self._service}.request", method=method, path=path, status=status)
        return Answer(method, path, status, resp_headers, body, wait_s)

    async def retry_get(self, attempt: Callable[[], Awaitable[T]], **context: Any) -> T:
        """Run *attempt* (one GET and the reading of its answer) with :class:`RetryGet`: the
        client's policy, retrying its *retry_on* failures; *context* goes to the log lines."""
        return await self._retry_get(attempt, **context)


# --------------------------------------------------------------------------------------------
# Lenient answer parsing
# --------------------------------------------------------------------------------------------


class WireModel(BaseModel):
    """Base of the pydantic models of provider and source answers: unknown fields ignored,
    immutable. Models are parsed at the edge and turned into frozen dataclasses inside.

    Validators are built on first use (``defer_build``), not at import: a CLI command that
    never talks to a service does not pay for them.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


def _none_if_invalid(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    if isinstance(value, bool):  # JSON true/false is never a number, a name or an object here
        return None
    try:
        return handler(value)
    except ValidationError:
        return None


def _valid_entries(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A list keeps the entries that validate; anything else is a validation error."""
    if not isinstance(value, list):
        raise ValueError("expected a list")
    try:
        return handler(value)
    except ValidationError:
        pass
    entries = []
    for entry in value:
        try:
            entries.append(handler([entry])[0])
        except ValidationError:
            continue
    return entries


def _empty_if_invalid(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError:
        return []


#: ``Lenient[X]``: an optional field that is ``None`` when missing, ``null``, a JSON boolean
#: (where no boolean is expected) or of another type. Numeric strings such as ``"15"`` are
#: read as numbers.
Lenient = Annotated[T | None, WrapValidator(_none_if_invalid)]
OptInt = Lenient[int]
OptStr = Lenient[str]
#: ``Entries[Model]``: a list (anything else is a validation error) of the entries that
#: validate; the others are skipped.
Entries = Annotated[list[T], WrapValidator(_valid_entries)]
#: ``LenientList[Model]``: like :data:`Entries`, but a missing field or one that is not a
#: list is ``[]``. Use with a default of ``[]``.
LenientList = Annotated[list[T], WrapValidator(_valid_entries), WrapValidator(_empty_if_invalid)]

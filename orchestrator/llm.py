"""The one client every LLM call goes through (chat backend, LLM planner, router, scorer).

* :meth:`LlmClient.from_section` builds it from a config section (``base_url``, ``model``,
  ``api_key_env``, ``timeout_s``: the ``[llm]`` section or an openai card's backend); the
  ``openai.OpenAI`` client is made on first use, with the SDK's own retries off
  (``max_retries=0``), so the retries below are the only ones.
* One retry policy (tenacity): connection errors, HTTP 408, 409, 429 and 5xx are retried, up to
  :data:`ATTEMPTS` tries. The wait is the server's ``retry-after-ms`` / ``Retry-After`` when it
  sends one, else 0.5 s, 1 s, 2 s (at most 4 s). A wait that would pass the call's deadline (its
  time limit, or the seconds the run's budget has left) is not slept: the call stops there and
  the error says so. A timeout is not retried: the time the call was given is spent.
* One error mapping (:func:`endpoint_error`): a timeout becomes
  :class:`~orchestrator.errors.CallTimedOut`, every other failure of the endpoint a
  :class:`~orchestrator.errors.ChatEndpointError` (with the HTTP status when there is one),
  the message naming the model and the endpoint.

:meth:`LlmClient.create` is one completion; :meth:`LlmClient.stream` is one completion streamed
(``stream=True``), its text handed on piece by piece; :meth:`LlmClient.paid` is one completion
paid from the run's budget when inside a run (:mod:`orchestrator.metered_llm`: each try is
reserved and settled, and the deadline is the meter's).
"""

from __future__ import annotations

import email.utils
import ipaddress
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

from orchestrator.errors import CallTimedOut, ChatEndpointError
from orchestrator.metered_llm import PaidReply, active_meter, paid_completion

__all__ = [
    "ATTEMPTS",
    "LOCAL_KEY",
    "LlmClient",
    "StreamedReply",
    "endpoint_error",
    "is_local_url",
    "is_retryable",
    "retry_after_s",
    "with_retries",
]

T = TypeVar("T")
ATTEMPTS = 3  # tries of one call, the first included
BACKOFF_S = 0.5  # first wait when the server names none; doubled each time
BACKOFF_MAX_S = 4.0
MAX_RETRY_AFTER_S = 60.0  # a server asking for a longer wait is not waited for
PAID_TIMEOUT_S = 600.0  # a paid call's time limit when the client names none (the SDK's default)
MIN_TRY_S = 0.05  # a try with less time than this before the deadline is not made
RETRY_STATUS = frozenset({408, 409, 429})  # the 4xx answers worth another try (plus every 5xx)
LOCAL_KEY = "not-needed"  # the SDK insists on some key; local servers ignore it

OnRetry = Callable[[int, BaseException, float], None]  # attempt number, its error, the wait


def is_local_url(url: str) -> bool:
    """True when ``url`` points at this machine (loopback), where servers need no API key."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_retryable(exc: BaseException) -> bool:
    """True for an openai error worth another try: connection, 408/409/429, 5xx (not timeouts)."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return False
    if isinstance(exc, openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRY_STATUS or exc.status_code >= 500
    return False


def retry_after_s(exc: BaseException) -> float | None:
    """The wait an HTTP error's ``retry-after-ms`` or ``Retry-After`` header asks for, if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
    when = headers.get("retry-after")
    parsed = email.utils.parsedate_tz(when) if when else None
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())


def endpoint_error(
    exc: BaseException, where: str, *, limit_s: float | None = None, note: str = ""
) -> Exception:
    """The project's error for an openai error of a call to ``where`` (model and endpoint).

    ``limit_s``: the seconds the call was given (named when it timed out); ``note`` ends the
    message (why no further try was made).
    """
    import openai

    if isinstance(exc, openai.APITimeoutError):
        after = f" after {limit_s:.3g} s" if limit_s is not None else ""
        return CallTimedOut(f"{where} timed out{after}{note}")
    if isinstance(exc, openai.APIConnectionError):
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        return ChatEndpointError(f"{where} is unreachable: {exc}{cause}{note}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = f"{where} answered HTTP {status}: {_error_message(exc)}{note}"
        return ChatEndpointError(message, status=status)
    return ChatEndpointError(f"{where}: {exc}{note}")


@dataclass
class StreamedReply:
    """What a streamed completion sent: its text (the pieces joined), why it ended, its usage."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


@dataclass
class LlmClient:
    """A chat model behind an OpenAI-compatible endpoint, called with one retry policy.

    ``client`` is the ``openai.OpenAI`` client (made on first use) or any object with the same
    ``chat.completions.create``. ``caller`` starts every error message (e.g. a card's name).
    """

    base_url: str | None  # None: the SDK's default ($OPENAI_BASE_URL, else the OpenAI API)
    model: str
    api_key: str = LOCAL_KEY
    timeout_s: float | None = None
    attempts: int = ATTEMPTS
    caller: str = ""
    client: Any = None

    @classmethod
    def from_section(cls, section: Any, *, caller: str = "", **overrides: Any) -> LlmClient:
        """A client for a config section with ``base_url``, ``model`` and ``api_key_env``.

        The key is read from the variable ``api_key_env``; an endpoint on this machine needs
        none, any other raises ChatEndpointError naming the variable to set.
        """
        base_url = overrides.pop("base_url", None) or section.base_url
        key = os.environ.get(section.api_key_env)
        if not key and not (base_url and is_local_url(base_url)):
            raise ChatEndpointError(
                f"{caller or section.model}: set {section.api_key_env} in the environment to "
                f"the API key of {base_url} (or point base_url at a local server)"
            )
        options = {"timeout_s": getattr(section, "timeout_s", None), **overrides}
        return cls(base_url, section.model, key or LOCAL_KEY, caller=caller, **options)

    @property
    def where(self) -> str:
        """The model and endpoint, as error messages name them."""
        prefix = f"{self.caller}: " if self.caller else ""
        return f"{prefix}model '{self.model}' at {self.base_url or 'the default OpenAI endpoint'}"

    def sdk(self) -> Any:
        """The SDK client, made on first use (its own retries off: ours apply)."""
        if self.client is None:
            import openai

            self.client = openai.OpenAI(
                base_url=self.base_url,
                api_key=self.api_key,
                timeout=self.timeout_s if self.timeout_s is not None else openai.NOT_GIVEN,
                max_retries=0,
            )
        return self.client

    def create(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        timeout_s: float | None = None,
        on_retry: OnRetry | None = None,
        **params: Any,
    ) -> Any:
        """One chat completion, retried by the policy; it ends within ``timeout_s`` seconds.

        Raises CallTimedOut or ChatEndpointError (see the module doc).
        """
        limit = timeout_s if timeout_s is not None else self.timeout_s
        clock = time.monotonic
        deadline = clock() + limit if limit is not None else None

        def attempt() -> Any:
            return self.create_once(messages, max_tokens, deadline, **params)

        return self._retrying(attempt, deadline, clock, on_retry, lambda: limit)

    def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        on_text: Callable[[str], None],
        timeout_s: float | None = None,
        **params: Any,
    ) -> StreamedReply:
        """One chat completion streamed: each piece of content goes to ``on_text`` as it comes.

        Opening the stream is retried by the policy; once text has come, an error is not
        retried (it would send the pieces twice). The usage is asked for
        (``stream_options.include_usage``). Raises CallTimedOut or ChatEndpointError.
        """
        limit = timeout_s if timeout_s is not None else self.timeout_s
        clock = time.monotonic
        deadline = clock() + limit if limit is not None else None
        params = {"stream_options": {"include_usage": True}, **params}
        opened = self._retrying(
            lambda: self.create_once(messages, max_tokens, deadline, stream=True, **params),
            deadline,
            clock,
            None,
            lambda: limit,
        )
        import openai

        pieces: list[str] = []
        finish: str | None = None
        usage = None
        try:
            for chunk in opened:
                if deadline is not None and clock() > deadline:
                    raise CallTimedOut(f"{self.where} timed out after {limit:.3g} s (streaming)")
                usage = chunk.usage or usage
                for choice in chunk.choices or []:
                    finish = choice.finish_reason or finish
                    text = choice.delta.content if choice.delta is not None else None
                    if text:
                        pieces.append(text)
                        on_text(text)
        except openai.OpenAIError as exc:
            raise endpoint_error(exc, self.where, limit_s=limit, note=" (while streaming)") from exc
        finally:
            opened.close()
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        return StreamedReply("".join(pieces), finish, prompt, completion)

    def create_once(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        deadline: float | None,
        **params: Any,
    ) -> Any:
        """One try of a completion, no retry (its timeout is what ``deadline`` leaves)."""
        request = {"model": self.model, "messages": messages, "max_tokens": max_tokens}
        if deadline is not None:  # else the client's default; None would mean "never"
            request["timeout"] = max(deadline - time.monotonic(), MIN_TRY_S)
        return self.sdk().chat.completions.create(**request, **params)

    def paid(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        usd_of: Callable[[int], Decimal],
        settled: Callable[[PaidReply], None] | None = None,
        on_retry: OnRetry | None = None,
        **params: Any,
    ) -> PaidReply:
        """One completion paid from the run's budget inside a run (each try reserved, settled).

        Its deadline is the run's (the meter's) or ``timeout_s``; raises BudgetExceeded when a
        try does not fit, else as :meth:`create`.
        """
        meter = active_meter()
        clock = meter.now if meter is not None else time.monotonic
        deadline = meter.deadline if meter is not None else None
        limit = self.timeout_s if self.timeout_s is not None else PAID_TIMEOUT_S
        if deadline is None:
            deadline = clock() + limit
        given: list[float] = [limit]  # the seconds the last try was given

        def create(timeout: float) -> Any:
            given.append(timeout)
            request = {"model": self.model, "messages": messages, "max_tokens": max_tokens}
            return self.sdk().chat.completions.create(**request, timeout=timeout, **params)

        def attempt() -> PaidReply:
            try:
                return paid_completion(
                    create,
                    messages,
                    max_tokens=max_tokens,
                    timeout_s=min(limit, max(deadline - clock(), MIN_TRY_S)),
                    usd_of=usd_of,
                    settled=settled,
                )
            except CallTimedOut as exc:  # the hard deadline of metered_llm.call_within
                raise CallTimedOut(f"{self.where}: {exc}") from exc

        return self._retrying(attempt, deadline, clock, on_retry, lambda: given[-1])

    def _retrying(
        self,
        attempt: Callable[[], T],
        deadline: float | None,
        clock: Callable[[], float],
        on_retry: OnRetry | None,
        limit: Callable[[], float | None],
    ) -> T:
        import openai

        return with_retries(
            attempt,
            retryable=is_retryable,
            failed=lambda exc, note: endpoint_error(exc, self.where, limit_s=limit(), note=note),
            catch=openai.OpenAIError,
            deadline=deadline,
            clock=clock,
            attempts=self.attempts,
            on_retry=on_retry,
        )


def with_retries(
    attempt: Callable[[], T],
    *,
    retryable: Callable[[BaseException], bool],
    failed: Callable[[BaseException, str], Exception],
    catch: type[BaseException] | tuple[type[BaseException], ...],
    deadline: float | None,
    clock: Callable[[], float] = time.monotonic,
    attempts: int = ATTEMPTS,
    on_retry: OnRetry | None = None,
) -> T:
    """``attempt()`` under the one retry policy (see the module doc), for any HTTP client.

    ``retryable`` says which errors get another try; the server's Retry-After is read from an
    error's ``response.headers``. An error of type ``catch`` that ends the call is raised as
    ``failed(error, note)``, the note saying why no further try was made (or empty).
    """
    from tenacity import RetryCallState, Retrying, retry_if_exception

    gave_up: list[str] = []

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after_s(exc) if exc is not None else None
        if asked is not None:
            return asked
        return min(BACKOFF_MAX_S, BACKOFF_S * 2 ** (state.attempt_number - 1))

    def stop(state: RetryCallState) -> bool:
        pause = state.upcoming_sleep
        if state.attempt_number >= attempts:
            gave_up.append(f"after {state.attempt_number} tries")
        elif pause > MAX_RETRY_AFTER_S:
            gave_up.append(f"it asks to wait {pause:g} s, longer than {MAX_RETRY_AFTER_S:g} s")
        elif deadline is not None and clock() + pause + MIN_TRY_S > deadline:
            left = max(0.0, deadline - clock())
            gave_up.append(f"waiting {pause:g} s would pass the deadline ({left:.2f} s left)")
        return bool(gave_up)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            on_retry(state.attempt_number, state.outcome.exception(), state.upcoming_sleep)

    retrying = Retrying(
        retry=retry_if_exception(retryable),
        wait=wait,
        stop=stop,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except catch as exc:
        note = f" (no further try: {gave_up[-1]})" if gave_up and retryable(exc) else ""
        raise failed(exc, note) from exc


def _error_message(exc: Any) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc.message)

"""The gateway core: provider models behind routed names (``openai:gpt-4o-mini``), each call
admitted by the shared limits of its account and model, made through the provider's
adapter, retried when that is worth it, and charged what it really used.

::

    async with open_gateway(GatewaySettings().load_config()) as gateway:
        completion = await gateway.generate("openai:gpt-4o-mini", ChatRequest.prompt("Hi"))
        async with gateway.stream("anthropic:claude-sonnet-4-0", request) as chunks:
            async for chunk in chunks:
                ...

Every call has a deadline: the caller's ``time_limit`` (seconds) or the configured
default. Errors are
the gateway's tree (:mod:`graphmesh.services.gateway.errors`); a request that could never
succeed (:mod:`graphmesh.services.gateway.validation`) is refused before anything else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from graphmesh.limits import Permit
from graphmesh.prices import PriceTable
from graphmesh.services.gateway import prompts
from graphmesh.services.gateway.errors import (
    GatewayError,
    InvalidRequest,
    LimiterUnavailable,
    ModelNotFound,
    RateLimited,
)
from graphmesh.services.gateway.limiting import RouteLimiter, estimate_tokens
from graphmesh.services.gateway.provider import OpenedStream, Provider
from graphmesh.services.gateway.retry import Deadline, RetryPolicy, with_retries
from graphmesh.services.gateway.types import (
    NO_SIGNALS,
    ChatRequest,
    Chunk,
    Completion,
    Embeddings,
    RateSignals,
    Usage,
)
from graphmesh.services.gateway.validation import check_chat, check_embed


class _Answer(Protocol):
    @property
    def usage(self) -> Usage: ...

    @property
    def signals(self) -> RateSignals: ...


class Observer(Protocol):
    """What the gateway tells its metrics about the calls to a routed model."""

    def retried(self, model: str, error: GatewayError) -> None:
        """A failed try of a call to ``model`` is made again."""

    def admitted(self, model: str, waited: float) -> None:
        """The shared limits admitted a call after ``waited`` seconds."""

    def refused(self, model: str, error: GatewayError) -> None:
        """The shared limits said no (:class:`RateLimited`) or could not be asked."""


class _Unobserved:
    def retried(self, model: str, error: GatewayError) -> None:
        pass

    def admitted(self, model: str, waited: float) -> None:
        pass

    def refused(self, model: str, error: GatewayError) -> None:
        pass


A = TypeVar("A", bound=_Answer)
DEFAULT_RETRY = RetryPolicy()
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Route:
    """Where a routed model name goes: a provider account, the provider's own model id, the
    shared limits of both, and the longest one request may take (the account's timeout)."""

    provider: Provider
    model: str
    limiter: RouteLimiter
    timeout: float


class Gateway:
    """Provider models by routed name; see the module docs."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        default_timeout: float = 60.0,
        prices: PriceTable | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        observer: Observer | None = None,
    ) -> None:
        self._routes = dict(routes)
        self._retry = retry
        self._default_timeout = default_timeout
        self._prices = prices or PriceTable.default()
        self._sleep = sleep
        self.observer: Observer = observer or _Unobserved()
        self._finishing: set[asyncio.Task[None]] = set()

    def models(self) -> list[str]:
        """Every routed model name, sorted."""
        return sorted(self._routes)

    def provider(self, model: str) -> str:
        """The provider (``openai``) of the routed model ``model``."""
        return self._route(model).provider.name

    def cost(self, model: str, usage: Usage) -> float | None:
        """The estimated USD cost of ``usage`` on ``model``, if it has a price."""
        return self._prices.cost(model, usage)

    async def embed(
        self, model: str, texts: Sequence[str], *, time_limit: float | None = None
    ) -> Embeddings:
        """One vector per text."""
        check_embed(texts)
        route, deadline = self._route(model), self._deadline(time_limit)
        cost = estimate_tokens(texts)
        return await self._call(
            model,
            route,
            cost,
            deadline,
            lambda time_left: route.provider.embed(route.model, texts, time_left=time_left),
        )

    async def generate(
        self, model: str, request: ChatRequest, *, time_limit: float | None = None
    ) -> Completion:
        """A whole completion."""
        check_chat(request)
        route, deadline = self._route(model), self._deadline(time_limit)
        return await self._call(
            model,
            route,
            _chat_cost(request),
            deadline,
            lambda time_left: route.provider.generate(route.model, request, time_left=time_left),
        )

    @asynccontextmanager
    async def stream(
        self, model: str, request: ChatRequest, *, time_limit: float | None = None
    ) -> AsyncIterator[AsyncIterator[Chunk]]:
        """The completion in chunks, the last with the usage. The limits' slot is held until
        the block ends; errors before the first chunk are retried like any call's."""
        check_chat(request)
        route, deadline = self._route(model), self._deadline(time_limit)
        cost = _chat_cost(request)
        async with AsyncExitStack() as stack:

            async def attempt() -> OpenedStream:
                return await self._open_stream(model, route, request, cost, deadline, stack)

            opened = await self._with_retries(model, attempt, deadline)
            yield opened.chunks

    async def summarize(
        self, model: str, text: str, *, max_tokens: int = 256, time_limit: float | None = None
    ) -> Completion:
        """A short summary of ``text``."""
        return await self.generate(
            model, prompts.summarize(text, max_tokens=max_tokens), time_limit=time_limit
        )

    async def rewrite(
        self,
        model: str,
        text: str,
        instruction: str,
        *,
        max_tokens: int = 512,
        time_limit: float | None = None,
    ) -> Completion:
        """``text`` rewritten as ``instruction`` says."""
        request = prompts.rewrite(text, instruction, max_tokens=max_tokens)
        return await self.generate(model, request, time_limit=time_limit)

    async def translate(
        self,
        model: str,
        text: str,
        *,
        source: str,
        target: str,
        max_tokens: int = 512,
        time_limit: float | None = None,
    ) -> Completion:
        """``text`` translated from ``source`` (empty: unknown) into ``target``."""
        request = prompts.translate(text, source, target, max_tokens=max_tokens)
        return await self.generate(model, request, time_limit=time_limit)

    async def answer_question(
        self,
        model: str,
        question: str,
        context: str,
        *,
        max_tokens: int = 256,
        time_limit: float | None = None,
    ) -> Completion:
        """An answer to ``question`` from ``context``."""
        request = prompts.answer_question(question, context, max_tokens=max_tokens)
        return await self.generate(model, request, time_limit=time_limit)

    async def _call(
        self,
        model: str,
        route: Route,
        cost: int,
        deadline: Deadline,
        call: Callable[[float], Awaitable[A]],
    ) -> A:
        """One admitted, limited, retried provider call."""

        async def attempt() -> A:
            permit = await self._admit(model, route, cost, deadline)
            try:
                async with route.limiter.held(permit):
                    answer = await call(min(deadline.remaining(), route.timeout))
            except GatewayError as error:
                await route.limiter.finish(permit, signals=error.signals)
                raise
            except BaseException:
                await route.limiter.finish(permit, signals=NO_SIGNALS)
                raise
            tokens = answer.usage.total_tokens
            if answer.signals.wait is not None:  # a pause is in place before the caller goes on
                await route.limiter.finish(permit, signals=answer.signals, tokens=tokens)
            else:  # bookkeeping only (release, token correction): off the caller's path
                self._finish_later(route.limiter.finish(permit, signals=NO_SIGNALS, tokens=tokens))
            return answer

        return await self._with_retries(model, attempt, deadline)

    def _finish_later(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run())
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def settled(self) -> None:
        """Wait until the bookkeeping of the calls answered so far is written (a released
        slot, a token correction). Closing the gateway waits for it too."""
        while self._finishing:
            await asyncio.gather(*self._finishing, return_exceptions=True)

    async def _admit(
        self, model: str, route: Route, cost: int, deadline: Deadline
    ) -> Permit | None:
        started = time.monotonic()
        try:
            permit = await route.limiter.admit(cost, deadline)
        except (RateLimited, LimiterUnavailable) as error:
            self.observer.refused(model, error)
            raise
        self.observer.admitted(model, time.monotonic() - started)
        return permit

    async def _open_stream(
        self,
        model: str,
        route: Route,
        request: ChatRequest,
        cost: int,
        deadline: Deadline,
        stack: AsyncExitStack,
    ) -> OpenedStream:
        """One try at opening a stream; on success its slot and response join ``stack``,
        which finishes the permit (release, and the usage of the last chunk) when it closes."""
        permit = await self._admit(model, route, cost, deadline)
        usage = _UsageSeen()
        signals = NO_SIGNALS
        try:
            async with AsyncExitStack() as attempt:
                await attempt.enter_async_context(route.limiter.held(permit))
                time_left = min(deadline.remaining(), route.timeout)
                opened = await attempt.enter_async_context(
                    route.provider.stream(route.model, request, time_left=time_left)
                )
                signals = opened.signals
                stack.push_async_callback(
                    lambda: route.limiter.finish(permit, signals=signals, tokens=usage.tokens)
                )
                stack.push_async_exit(attempt.pop_all())
        except GatewayError as error:
            await route.limiter.finish(permit, signals=error.signals)
            raise
        except BaseException:
            await route.limiter.finish(permit, signals=NO_SIGNALS)
            raise
        watched = _watched(opened, usage)
        stack.push_async_callback(watched.chunks.aclose)
        return watched

    async def _with_retries(
        self, model: str, attempt: Callable[[], Awaitable[T]], deadline: Deadline
    ) -> T:
        def on_retry(error: GatewayError) -> None:
            self.observer.retried(model, error)

        return await with_retries(
            attempt, policy=self._retry, deadline=deadline, sleep=self._sleep, on_retry=on_retry
        )

    def _route(self, model: str) -> Route:
        route = self._routes.get(model)
        if route is None:
            raise ModelNotFound(f"no gateway route for model {model!r}")
        return route

    def _deadline(self, time_limit: float | None) -> Deadline:
        if time_limit is not None and not time_limit > 0:
            message = f"the time limit must be a positive number of seconds, got {time_limit!r}"
            raise InvalidRequest(message)
        return Deadline.after(self._default_timeout if time_limit is None else time_limit)


def _chat_cost(request: ChatRequest) -> int:
    texts = [request.system, *(message.content for message in request.messages)]
    return estimate_tokens(texts, request.max_tokens)


class _UsageSeen:
    """The tokens of the usage a stream's last chunk reported, once it has."""

    def __init__(self) -> None:
        self.tokens: int | None = None


def _watched(opened: OpenedStream, usage: _UsageSeen) -> OpenedStream:
    """``opened`` with its chunks noting the usage of the last one in ``usage``."""

    async def chunks() -> AsyncGenerator[Chunk, None]:
        async with aclosing(opened.chunks):
            async for chunk in opened.chunks:
                if chunk.usage is not None:
                    usage.tokens = chunk.usage.total_tokens
                yield chunk

    return replace(opened, chunks=chunks())

"""Builds a :class:`Gateway` from its configuration: the shared limiter store, one SDK
client per account (API keys read here, from env or files), and a route per model."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

from graphmesh.limits import LimitStore, LimitStoreUnavailable, MemoryLimitStore
from graphmesh.limits.postgres import PostgresLimitStore
from graphmesh.prices import Price, PriceTable
from graphmesh.services.gateway.anthropic_provider import AnthropicProvider
from graphmesh.services.gateway.config import (
    AccountConfig,
    ConfigError,
    GatewayConfig,
    LimiterConfig,
    environment,
)
from graphmesh.services.gateway.errors import LimiterUnavailable
from graphmesh.services.gateway.gateway import Gateway, Observer, Route
from graphmesh.services.gateway.limiting import (
    UNREACHABLE,
    LimiterOptions,
    ModelLimits,
    RouteLimiter,
)
from graphmesh.services.gateway.openai_provider import OpenAIProvider
from graphmesh.services.gateway.provider import Provider
from graphmesh.services.gateway.retry import RetryPolicy

logger = logging.getLogger(__name__)


@asynccontextmanager
async def open_gateway(
    config: GatewayConfig,
    *,
    environ: Mapping[str, str] | None = None,
    observer: Observer | None = None,
) -> AsyncIterator[Gateway]:
    """A gateway for ``config``, its clients and limiter store closed on exit; ``observer``
    hears of retries and of the limits' waits and refusals (metrics)."""
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(config.limiter))
        providers: dict[str, Provider] = {}
        for name in sorted({model.account for model in config.models.values()}):
            account = config.accounts[name]
            try:
                provider = make_provider(account, environ or environment())
            except ConfigError as error:
                if not account.optional:
                    raise
                logger.warning("account %s is left out, its models unserved: %s", name, error)
                continue
            stack.push_async_callback(provider.aclose)
            providers[name] = provider
        gateway = Gateway(
            routes(config, store, providers),
            retry=RetryPolicy(
                attempts=config.retry.attempts,
                base_delay=config.retry.base_delay_s,
                max_delay=config.retry.max_delay_s,
            ),
            default_timeout=config.default_timeout_s,
            observer=observer,
            prices=PriceTable.default().overridden(
                {name: Price(**price.model_dump()) for name, price in config.prices.items()}
            ),
        )
        try:
            yield gateway
        finally:
            await gateway.settled()


@asynccontextmanager
async def open_store(config: LimiterConfig) -> AsyncIterator[LimitStore]:
    """The shared store (Postgres) when configured, else one for this process alone."""
    if config.dsn is None:
        logger.warning("no limiter database configured: limits hold within this process only")
        yield MemoryLimitStore()
        return
    dsn = config.dsn.get_secret_value()
    try:
        opened = PostgresLimitStore.open(dsn, pool_timeout=config.pool_timeout_s)
        store = await opened.__aenter__()
    except LimitStoreUnavailable as error:
        raise LimiterUnavailable(UNREACHABLE) from error
    try:
        yield store
    finally:
        await opened.__aexit__(None, None, None)


def make_provider(account: AccountConfig, environ: Mapping[str, str]) -> Provider:
    """The SDK adapter of ``account``, with its API key."""
    key = account.api_key(environ)
    if account.provider == "openai":
        return OpenAIProvider(
            api_key=key,
            base_url=account.base_url,
            organization=account.organization,
            timeout=account.timeout_s,
        )
    return AnthropicProvider(api_key=key, base_url=account.base_url, timeout=account.timeout_s)


def routes(
    config: GatewayConfig, store: LimitStore, providers: Mapping[str, Provider]
) -> dict[str, Route]:
    """A route per configured model; its limits are keyed by account and provider model."""
    options = LimiterOptions(
        max_wait=config.limiter.max_wait_s,
        window_margin=config.limiter.window_margin_s,
        lease=config.limiter.lease_s,
        local_grant=config.limiter.local_grant_s,
    )
    built = {}
    for name, model in config.models.items():
        if model.account not in providers:
            continue  # an optional account without its key
        provider_model = config.provider_model(name)
        limits = ModelLimits(
            requests_per_minute=model.requests_per_minute,
            tokens_per_minute=model.tokens_per_minute,
            max_concurrent=model.max_concurrent,
        )
        limiter = RouteLimiter(
            store, key=f"{model.account}/{provider_model}", limits=limits, options=options
        )
        built[name] = Route(
            provider=providers[model.account],
            model=provider_model,
            limiter=limiter,
            timeout=config.accounts[model.account].timeout_s,
        )
    return built

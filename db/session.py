"""Engines and sessions. No Flask here: tasks and consumers use it as it is."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from config import get_settings


def make_engine(url: str, **kwargs) -> Engine:
    """An engine whose connections give up on a stuck statement instead of hanging a worker."""
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": 10,
            "application_name": kwargs.pop("application_name", "salesflow"),
        },
        **kwargs,
    )


@lru_cache(maxsize=1)
def default_engine() -> Engine:
    return make_engine(get_settings().database_url)


@lru_cache(maxsize=1)
def _factory() -> sessionmaker[Session]:
    return sessionmaker(default_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """One unit of work: commits once at the end, rolls back on any error."""
    with _factory().begin() as session:
        yield session

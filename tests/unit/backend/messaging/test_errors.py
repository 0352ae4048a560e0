"""nats-py exceptions are translated to typed messaging errors with stable codes."""

from __future__ import annotations

import nats.errors
import nats.js.errors
import pytest

from backend.messaging import errors as E


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (nats.js.errors.NoStreamResponseError(), E.NoStreamError),
        (nats.js.errors.NotFoundError(code=404, err_code=10059), E.StreamNotFoundError),
        (nats.js.errors.ServiceUnavailableError(code=503), E.JetStreamUnavailableError),
        (nats.js.errors.BadRequestError(code=400, err_code=10058), E.StreamConfigConflictError),
        (nats.js.errors.APIError(code=400, err_code=10054), E.PayloadTooLargeError),
        (nats.js.errors.APIError(code=503, err_code=10039), E.JetStreamUnavailableError),
        (nats.js.errors.APIError(code=400, err_code=99999), E.JetStreamApiError),
        (nats.errors.NoRespondersError(), E.NoRespondersError),
        (nats.errors.AuthorizationError(), E.AuthFailedError),
        (nats.errors.MaxPayloadError(), E.PayloadTooLargeError),
        (nats.errors.BadSubjectError(), E.InvalidSubjectError),
        (nats.errors.ConnectionClosedError(), E.NotConnectedError),
        (nats.errors.StaleConnectionError(), E.ConnectionLostError),
        (nats.errors.NoServersError(), E.ConnectFailedError),
        (nats.errors.TimeoutError(), E.BrokerTimeoutError),
        (TimeoutError(), E.BrokerTimeoutError),
        (ConnectionResetError(), E.ConnectionLostError),
        (RuntimeError("x"), E.MessagingError),
    ],
)
def test_translation(raised: BaseException, expected: type[E.MessagingError]) -> None:
    translated = E.translate_nats_error(raised)
    assert type(translated) is expected
    assert translated.code.startswith("messaging.")


def test_jetstream_api_error_keeps_the_server_code() -> None:
    translated = E.translate_nats_error(nats.js.errors.APIError(code=400, err_code=10071))
    assert isinstance(translated, E.JetStreamApiError)
    assert translated.err_code == 10071


def test_codes_are_unique_and_stable() -> None:
    classes = [
        c
        for c in vars(E).values()
        if isinstance(c, type) and issubclass(c, E.MessagingError) and c is not E.MessagingError
    ]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
    assert E.NoStreamError.code == "messaging.no_stream"
    assert E.ConnectFailedError.code == "messaging.connect_failed"


def test_mapped_block_chains_the_original() -> None:
    original = nats.errors.NoRespondersError()
    with pytest.raises(E.NoRespondersError) as info, E.mapped_nats_errors():
        raise original
    assert info.value.__cause__ is original


def test_mapped_block_leaves_other_exceptions_alone() -> None:
    with pytest.raises(KeyError), E.mapped_nats_errors():
        raise KeyError("not a nats error")

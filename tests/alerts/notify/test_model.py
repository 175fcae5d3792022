"""The notification record and the notifier contract."""

from __future__ import annotations

import pytest
from support.notifications import firing_alert, notification

from finsent.alerts.notify.model import DeliveryError, Notification, Notifier
from finsent.alerts.notify.redact import REDACTED, REDACTOR


def test_a_notification_needs_an_id_and_an_alert() -> None:
    with pytest.raises(ValueError, match="needs an id"):
        Notification(
            id="", group_key="k", kind="firing", alerts=(firing_alert(),), dashboard_url=""
        )
    with pytest.raises(ValueError, match="at least one alert"):
        Notification(id="n", group_key="k", kind="firing", alerts=(), dashboard_url="")


def test_anything_with_a_channel_and_send_is_a_notifier() -> None:
    class Quiet:
        channel = "quiet"

        def send(self, notification: Notification) -> None:
            pass

    assert isinstance(Quiet(), Notifier)
    assert not isinstance(object(), Notifier)
    Quiet().send(notification())


def test_a_delivery_error_is_scrubbed_of_given_and_registered_secrets() -> None:
    REDACTOR.register("registered-SeCrEt-91d2")
    err = DeliveryError(
        "failed with given-SeCrEt-4410 and registered-SeCrEt-91d2",
        transient=True,
        retry_after=2.0,
        secrets=["given-SeCrEt-4410"],
    )
    assert str(err) == f"failed with {REDACTED} and {REDACTED}"
    assert (err.transient, err.retry_after) == (True, 2.0)

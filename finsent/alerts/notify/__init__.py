"""Notifications of alert groups and their delivery to Slack and email.

- ``model``: the ``Notification``, and the contract every notifier meets (``Notifier``,
  ``DeliveryError``). Pure data: the dispatcher imports only this.
- ``redact``: keeps secrets (webhook URLs, SMTP passwords) out of errors and log records.
- ``content``: what a message says, shared by every channel.
- ``slack``: Block Kit messages, posted to an incoming webhook over httpx.
- ``email``: text and HTML messages, sent over SMTP.
- ``delivery``: ``deliver``, one send with retries, recorded in a delivery log.
"""

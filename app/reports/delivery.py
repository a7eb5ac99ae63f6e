"""Send a report: by e-mail over SMTP (optionally STARTTLS) and to a webhook signed with HMAC.

Credentials and the webhook key are read from the environment at the moment of sending; they
are never stored, logged or put in a delivery's detail.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import smtplib
import ssl
import time
from collections.abc import Mapping
from email.message import EmailMessage
from urllib.parse import urlsplit

from app.config import ReportConfig, SmtpConfig

SIGNATURE_HEADER = "X-Quarterdeck-Signature"
TIMESTAMP_HEADER = "X-Quarterdeck-Timestamp"
DETAIL_LIMIT = 300


class DeliveryError(Exception):
    """A delivery attempt failed; the message says why (no secret in it)."""


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """Return the signature header's value: sha256= and the HMAC of "timestamp." + body."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def build_message(
    smtp: SmtpConfig, recipients: tuple[str, ...], subject: str, text: str, html: str, csv: str,
    filename: str,
) -> EmailMessage:  # fmt: skip
    """Compose the mail: plain text, the HTML as its alternative, the CSV attached."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = smtp.sender
    message["To"] = ", ".join(recipients)
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    message.add_attachment(csv.encode(), maintype="text", subtype="csv", filename=filename)
    return message


def send_email(
    smtp: SmtpConfig, message: EmailMessage, environ: Mapping[str, str] | None = None
) -> str:
    """Send the message; return what the server accepted, or raise DeliveryError."""
    environ = os.environ if environ is None else environ
    username = environ.get(smtp.username_env, "") if smtp.username_env else ""
    password = environ.get(smtp.password_env, "") if smtp.password_env else ""
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
            client.ehlo()
            if smtp.starttls:
                context = ssl.create_default_context(cafile=smtp.ca_file or None)
                client.starttls(context=context)
                client.ehlo()
            if username:
                client.login(username, password)
            refused = client.send_message(message)
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryError(f"SMTP {smtp.host}:{smtp.port}: {_reply(exc)}") from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(
            f"SMTP {smtp.host}:{smtp.port} answered {exc.smtp_code}: {_reply(exc.smtp_error)}"
        ) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"SMTP refused every recipient: {', '.join(exc.recipients)}") from None
    except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
        raise DeliveryError(f"SMTP {smtp.host}:{smtp.port}: {_reply(exc)}") from None
    accepted = [r for r in message["To"].split(", ") if r not in refused]
    note = f"; refused {', '.join(sorted(refused))}" if refused else ""
    return f"sent to {', '.join(accepted)} via {smtp.host}:{smtp.port}{note}"


def post_webhook(
    report: ReportConfig,
    body: bytes,
    *,
    timeout_s: float = 10.0,
    environ: Mapping[str, str] | None = None,
    now: float | None = None,
) -> str:
    """POST the JSON body with its signature; return the answer's status, or raise DeliveryError."""
    environ = os.environ if environ is None else environ
    secret = environ.get(report.webhook_secret_env, "")
    if not secret:
        raise DeliveryError(
            f"the variable {report.webhook_secret_env} holding the webhook key is not set"
        )
    timestamp = str(int(now if now is not None else time.time()))
    parts = urlsplit(report.webhook_url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(parts.hostname, parts.port, timeout=timeout_s)
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "Quarterdeck report delivery",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: signature(secret.encode(), timestamp, body),
            },
        )
        response = connection.getresponse()
        answer = response.read(DETAIL_LIMIT).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(f"webhook {parts.hostname}:{parts.port or ''}: {_reply(exc)}") from None
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        raise DeliveryError(f"webhook answered HTTP {response.status}: {_reply(answer)}")
    return f"webhook answered HTTP {response.status}"


def _reply(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = " ".join(str(value).split()) or type(value).__name__
    return text[:DETAIL_LIMIT]

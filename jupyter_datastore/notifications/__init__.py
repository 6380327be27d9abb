"""Per-user notifications, stored from notification and execution events, pushed live."""

from .service import Change, Feed, NotificationPolicy, Notifications, parse_time

__all__ = ["Change", "Feed", "NotificationPolicy", "Notifications", "parse_time"]

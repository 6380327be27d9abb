"""Per-user notifications, stored from notification and execution events, pushed live."""

from .service import Feed, NotificationPolicy, Notifications, parse_time

__all__ = ["Feed", "NotificationPolicy", "Notifications", "parse_time"]

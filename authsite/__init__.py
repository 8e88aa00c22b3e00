"""Login, server-side sessions and permissions for server-rendered FastAPI sites."""

from authsite.app import AuthSite, create_app
from authsite.config import Settings
from authsite.guards import CurrentUser, admin_user, already_logged_in, logged_in, require, super_user

__all__ = [
    "AuthSite",
    "CurrentUser",
    "Settings",
    "admin_user",
    "already_logged_in",
    "create_app",
    "logged_in",
    "require",
    "super_user",
]

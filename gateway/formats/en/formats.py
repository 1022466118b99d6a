"""Date formats of the admin: ISO-like and always with the time zone, so times are never ambiguous.

Everything not set here falls back to Django's own ``en`` formats.
"""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"

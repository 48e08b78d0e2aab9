"""Address to prefix, network (ASN and name), country and network flags, from an offline database.

Debian's `libloc-database` (the IPFire location database) is read by default; a MaxMind DB file (`.mmdb`:
GeoLite2/GeoIP2 ASN, Country, City, Anonymous-IP) is the user's alternative. Lookups are columnar::

    with open_geo() as geo:
        facts = geo.lookup(requests["client"])   # one row per request, distinct addresses looked up once
        geo.database.describe()                  # which file, which vendor, built when
"""

from floodwall.geo.database import FLAG_COLUMNS, LOOKUP_SCHEMA, GeoDatabase, GeoRecord
from floodwall.geo.libloc import DEFAULT_LIBLOC_PATHS
from floodwall.geo.lookup import GeoLookup, GeoReader, open_geo

__all__ = [
    "DEFAULT_LIBLOC_PATHS",
    "FLAG_COLUMNS",
    "LOOKUP_SCHEMA",
    "GeoDatabase",
    "GeoLookup",
    "GeoReader",
    "GeoRecord",
    "open_geo",
]

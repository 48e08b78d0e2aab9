"""Which CRS rules Floodwall loads, the family and CONTRACT vector of each, and Floodwall's own few rules.

CRS rule ids carry their file's number (942xxx is REQUEST-942-APPLICATION-ATTACK-SQLI.conf); the mapping is by
rule id, so evidence stays in the vocabulary CERTs know. Rules about the protocol itself (920, 921), multipart
bodies (922), DoS counters (912) and session fixation (943) need what a log does not have and are not loaded.
"""

from __future__ import annotations

from typing import Final

from floodwall.model import Vector

__all__ = ["CRS_FILES", "FLOODWALL_RULES", "family_of"]

#: The CRS 3.3 request rule files read, by their number.
CRS_FILES: Final = ("913", "930", "931", "932", "933", "934", "941", "942", "944")

#: (rule id prefix, family, vector), longest prefix first wins.
_FAMILIES: Final[tuple[tuple[str, str, Vector], ...]] = (
    ("913", "scanner", Vector.SCAN),
    ("930130", "sensitive-file", Vector.SCAN),  # restricted-files.data: .git, .env, .htpasswd, wp-config.php~ ...
    ("930", "traversal", Vector.PATH_TRAVERSAL),  # ../ in all encodings, /etc/passwd and other OS files
    ("931", "remote-file-inclusion", Vector.RCE),
    ("932", "command-injection", Vector.RCE),
    ("933", "php-injection", Vector.RCE),
    ("934", "nodejs-injection", Vector.RCE),
    ("944", "java-injection", Vector.RCE),
    ("941", "xss", Vector.XSS),
    ("942", "sqli", Vector.SQLI),
    ("FW-1001", "login", Vector.LOGIN_BRUTEFORCE),
    ("FW-1002", "xmlrpc", Vector.XMLRPC_ABUSE),
)


def family_of(rule_id: str) -> tuple[str, Vector] | None:
    """The family and vector of a rule id, or None for rules outside the breach-attempt families."""
    best: tuple[str, str, Vector] | None = None
    for prefix, family, vector in _FAMILIES:
        if rule_id.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, family, vector)
    return None if best is None else (best[1], best[2])


# Floodwall's own rules, not CRS's: one POST to a login form or to xmlrpc.php is a reader or an editor, many are an
# attack, so each hit is a NOTICE (2 points) and the per-client count is the detector's and the policy's call.
# Paths: WordPress (wp-login.php, xmlrpc.php), Drupal (/user/login), Joomla (/administrator), Ghost (admin session).
FLOODWALL_RULES: Final = r"""
SecRule REQUEST_FILENAME "@rx (?:^|/)wp-login\.php$" \
    "id:FW-100101,phase:2,t:none,t:urlDecodeUni,t:normalizePath,t:lowercase,severity:'NOTICE',\
    msg:'Floodwall: POST to the WordPress login form',tag:'floodwall',tag:'paranoia-level/1',chain"
    SecRule REQUEST_METHOD "@streq POST" "t:none"
SecRule REQUEST_FILENAME "@rx ^/(?:[a-z]{2}(?:-[a-z]{2})?/)?user/login/?$" \
    "id:FW-100102,phase:2,t:none,t:urlDecodeUni,t:normalizePath,t:lowercase,severity:'NOTICE',\
    msg:'Floodwall: POST to the Drupal login form',tag:'floodwall',tag:'paranoia-level/1',chain"
    SecRule REQUEST_METHOD "@streq POST" "t:none"
SecRule REQUEST_FILENAME "@rx ^/administrator(?:/index\.php)?/?$" \
    "id:FW-100103,phase:2,t:none,t:urlDecodeUni,t:normalizePath,t:lowercase,severity:'NOTICE',\
    msg:'Floodwall: POST to the Joomla administrator login',tag:'floodwall',tag:'paranoia-level/1',chain"
    SecRule REQUEST_METHOD "@streq POST" "t:none"
SecRule REQUEST_FILENAME "@rx ^/ghost/api/(?:v\d+(?:\.\d+)?/)?admin/session/?$" \
    "id:FW-100104,phase:2,t:none,t:urlDecodeUni,t:normalizePath,t:lowercase,severity:'NOTICE',\
    msg:'Floodwall: POST to the Ghost admin session',tag:'floodwall',tag:'paranoia-level/1',chain"
    SecRule REQUEST_METHOD "@streq POST" "t:none"
SecRule REQUEST_FILENAME "@rx (?:^|/)xmlrpc\.php$" \
    "id:FW-100201,phase:2,t:none,t:urlDecodeUni,t:normalizePath,t:lowercase,severity:'NOTICE',\
    msg:'Floodwall: POST to WordPress xmlrpc.php (pingback and multicall abuse)',tag:'floodwall',\
    tag:'paranoia-level/1',chain"
    SecRule REQUEST_METHOD "@streq POST" "t:none"
"""

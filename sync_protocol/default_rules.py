"""The default sync rules: a dealer network in Italy, Germany, France, Spain and Poland.

Token claims used: ``sub`` (the user's systemuser GUID), ``crm_profile``,
``territories`` (e.g. ``["IT-NW", "IT-NE"]``) and ``countries`` (e.g. ``["IT"]``).
Operators copy this text (``crmsync rules default``) into their own file and edit it.
"""

from __future__ import annotations

from functools import cache

from .rules import SyncRules, parse_rules

DEFAULT_RULES_TOML = """\
version = 1
max_channels_per_user = 200
profile_claim = "crm_profile"

[channels]
# Coarse channels keep per-user state small: an owner, a sales territory, a country.
default = ["owner:{ownerid}", "territory:{territory}", "country:{country}"]

[policies.account]
# Dynamics owns the account number, revenue and status; long notes need a person.
upstream_wins = ["accountnumber", "revenue", "statecode", "transactioncurrencyid"]
manual = ["description"]

[policies.contact]
upstream_wins = ["statecode"]

[policies.lead]
upstream_wins = ["statecode"]

[policies.opportunity]
upstream_wins = ["statecode"]
manual = ["estimatedvalue"]

[policies.quote]
# Quotes are priced in Dynamics: devices only annotate them.
upstream_wins = ["quotenumber", "totalamount", "statecode"]
delete = "update_wins"

[policies.appointment]
delete = "update_wins"

# -- sales representatives: their own records ------------------------------------------
[profiles.sales_rep]
description = "Field sales: sees and edits the records they own."
read = ["owner:{sub}"]

[profiles.sales_rep.write.account]
create = true
update = true
exclude = ["ownerid", "territory", "country", "accountnumber", "revenue", "statecode"]

[profiles.sales_rep.write.contact]
create = true
update = true
exclude = ["ownerid", "territory", "country", "statecode"]

[profiles.sales_rep.write.lead]
create = true
update = true
delete = true
exclude = ["ownerid", "territory", "country"]

[profiles.sales_rep.write.opportunity]
create = true
update = true
exclude = ["ownerid", "territory", "country", "statecode"]

[profiles.sales_rep.write.quote]
update = true
fields = ["description"]

[profiles.sales_rep.write.appointment]
create = true
update = true
delete = true
exclude = ["ownerid", "territory", "country"]

# -- service technicians: their territory's customers, their own appointments ----------
[profiles.service_technician]
description = "Service: reads the territory's customers, works their own appointments."
read = ["owner:{sub}", "territory:{territories}"]

[profiles.service_technician.write.appointment]
create = true
update = true
fields = ["subject", "scheduledstart", "scheduledend", "location", "description",
          "statecode", "regardingobjectid", "isalldayevent"]

[profiles.service_technician.write.contact]
update = true
fields = ["telephone1", "mobilephone", "emailaddress1", "jobtitle"]

# -- dealer managers: everything in their territories ---------------------------------
[profiles.dealer_manager]
description = "Dealer management: all records of their territories, may reassign owners."
read = ["owner:{sub}", "territory:{territories}"]

[profiles.dealer_manager.write.account]
create = true
update = true
exclude = ["country", "accountnumber", "revenue"]

[profiles.dealer_manager.write.contact]
create = true
update = true
delete = true
exclude = ["country"]

[profiles.dealer_manager.write.lead]
create = true
update = true
delete = true

[profiles.dealer_manager.write.opportunity]
create = true
update = true
delete = true

[profiles.dealer_manager.write.quote]
update = true
fields = ["description", "name"]

[profiles.dealer_manager.write.appointment]
create = true
update = true
delete = true

# -- administrators: whole countries ---------------------------------------------------
[profiles.admin]
description = "Administration: every record of their countries."
read = ["owner:{sub}", "country:{countries}"]

[profiles.admin.write.account]
create = true
update = true
delete = true

[profiles.admin.write.contact]
create = true
update = true
delete = true

[profiles.admin.write.lead]
create = true
update = true
delete = true

[profiles.admin.write.opportunity]
create = true
update = true
delete = true

[profiles.admin.write.quote]
create = true
update = true
delete = true

[profiles.admin.write.appointment]
create = true
update = true
delete = true
"""

PROFILES: tuple[str, ...] = ("sales_rep", "service_technician", "dealer_manager", "admin")


@cache
def default_rules() -> SyncRules:
    """The parsed default rules (parsed once)."""
    return parse_rules(DEFAULT_RULES_TOML, "<default rules>")

"""The Dynamics 365 (Dataverse Web API) connector: client, mapping, loads, deltas, writeback."""

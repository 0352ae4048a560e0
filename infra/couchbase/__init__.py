"""Couchbase provisioning for the record store: bucket, scope, collections and GSI indexes."""

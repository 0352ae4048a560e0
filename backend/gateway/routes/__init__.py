"""HTTP and WebSocket routes of the sync API: one controller per resource."""

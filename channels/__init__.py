"""Channels: the edges. Open311 GeoReport v2 issue reporting, the Intelligent Operations Centre
incident feed (out and in), and notifications (e-mail, SMS, push).

Owns the `channels` schema. Calls down into the contexts through their public modules and
subscribes to their events through the outbox.
"""

"""Running searches on Ray clusters: Ray's own cluster launcher and Jobs API, wrapped for gradprom.

`templates` holds the shipped cluster configs (cloud, on-premises, KubeRay) and renders/validates them;
`launcher` wraps `ray up/down/status` and the Jobs API for the `gradprom cluster` commands.
"""

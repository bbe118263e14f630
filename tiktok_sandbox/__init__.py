"""Local emulator of TikTok's OAuth v2 and Content Posting API (see docs/sandbox.md)."""

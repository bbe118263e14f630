"""A typed async client for TikTok's OAuth and Content Posting API, and the pure rules around it."""

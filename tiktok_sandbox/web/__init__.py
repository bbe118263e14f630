"""HTTP edge of the sandbox: TikTok's routes, the upload PUT and the `/_sandbox` control API."""

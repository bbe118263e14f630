"""The HTTP edge: routes, the HTML pages a person sees while connecting, and the app keys."""

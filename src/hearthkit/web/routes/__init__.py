"""Route modules of the web app; each has `router = APIRouter()` and is listed in app.ROUTER_MODULES."""

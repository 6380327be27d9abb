"""`python -m jupyter_datastore.graphql`: write the schema's SDL to `schema.graphql`."""

from .schema import SDL_PATH, sdl

SDL_PATH.write_text(sdl())
print(f"wrote {SDL_PATH}")

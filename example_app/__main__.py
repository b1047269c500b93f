"""``python -m example_app``: run the example platform on http://127.0.0.1:5000."""

import os

from . import create_app

if __name__ == "__main__":
    create_app().run(
        host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "5000"))
    )

"""brushwork: an offline-first text-to-image studio on the Stable Diffusion architecture.

Importing the package creates no state: models load only when a caller asks for them.
"""

__version__ = "0.1.0"

"""The radcascade MONAI Label app's tasks (MONAI Label puts the app folder on the path: ``from lib.infers ...``)."""

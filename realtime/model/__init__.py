"""The model-file contract: everything the engines and training must agree on bit for bit (config, model
file, mu-law, local conditioning, level bank, one-pole, note keys). Imports nothing from models/."""

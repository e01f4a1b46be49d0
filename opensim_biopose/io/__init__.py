"""OpenSim files (TRC/MOT/STO, setup XML) through the official adapters, and video reading."""

"""napari_xt.widget"""

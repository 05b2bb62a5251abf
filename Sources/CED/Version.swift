/// The version of this package (also `ced --version`).
public let cedVersion = "0.1.0"

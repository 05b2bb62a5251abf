import CED
print("ced")

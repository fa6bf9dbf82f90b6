!mod$ v1 sum:fa9f574e19d14b4d
module kernels
contains
subroutine smooth(a,b,n)
integer(4),intent(in)::n
real(8),intent(in)::a(1_8:int(n,kind=8))
real(8),intent(out)::b(1_8:int(n,kind=8))
end
end
